"""The on-disk cache: round trips, damaged entries ignored, SPARSEC_CACHE=off disables it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsec import cache


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SPARSEC_CACHE", raising=False)
    return tmp_path


def test_json_round_trip_and_key_stability(cache_dir: Path) -> None:
    k = cache.key_of({"b": 1, "a": [1, 2]})
    assert k == cache.key_of({"a": [1, 2], "b": 1}) != cache.key_of({"a": [1, 2], "b": 2})
    assert cache.get_json("tune", k) is None
    cache.put_json("tune", k, {"dense": 1.5})
    assert cache.get_json("tune", k) == {"dense": 1.5}


def test_damaged_entries_ignored(cache_dir: Path) -> None:
    cache.put_json("tune", "ab" * 32, {"dense": 1.0})
    cache.put_file("lib", "cd" * 32, b"\x7fELF library bytes")
    (entry,) = (cache_dir / "tune").rglob("*.json")
    entry.write_text(entry.read_text().replace("1.0", "0.5"))
    (lib,) = (cache_dir / "lib").rglob("*.bin")
    lib.write_bytes(b"\x7fELF tampered bytes!")
    assert cache.get_json("tune", "ab" * 32) is None
    assert cache.get_file("lib", "cd" * 32) is None


def test_file_round_trip_and_off_switch(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.put_file("lib", "ef" * 32, b"data")
    assert cache.get_file("lib", "ef" * 32) == b"data"
    monkeypatch.setenv("SPARSEC_CACHE", "off")
    assert cache.get_file("lib", "ef" * 32) is None
    cache.put_json("tune", "01" * 32, {"x": 1.0})
    monkeypatch.delenv("SPARSEC_CACHE")
    assert cache.get_json("tune", "01" * 32) is None  # nothing was written while off


def test_unwritable_cache_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(blocker))
    cache.put_json("tune", "aa" * 32, {"x": 1.0})  # silently skipped
    assert cache.get_json("tune", "aa" * 32) is None


def test_cli_cache_info_and_clear(cache_dir: Path) -> None:
    from click.testing import CliRunner

    from sparsec.cli import main

    cache.put_json("tune", "ab" * 32, {"dense": 1.0})
    cache.put_file("lib", "cd" * 32, b"x" * 2000)
    r = CliRunner().invoke(main, ["cache"])
    assert r.exit_code == 0 and str(cache_dir) in r.stdout
    assert "lib: 1 entries" in r.stdout and "tune: 1 entries" in r.stdout
    r = CliRunner().invoke(main, ["cache", "--clear"])
    assert r.exit_code == 0 and "removed 2 cache entries" in r.stdout
    assert cache.get_json("tune", "ab" * 32) is None and cache.get_file("lib", "cd" * 32) is None
