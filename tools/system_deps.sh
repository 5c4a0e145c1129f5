#!/usr/bin/env bash
# System tools sparsec's setup needs (present on the dev image; installed here on a bare Debian machine).
set -euo pipefail
missing=()
for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages for: ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq cmake g++ make >/dev/null
