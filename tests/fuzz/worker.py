"""Fuzz worker: reads ``{"kind", "seed"}`` JSON lines on stdin, answers ``{"outcome", "detail"}`` lines.

Its C-level stdout goes to stderr so library chatter cannot corrupt the answers; a case that kills the process
(a crash) is seen by the harness as end of file.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from .cases import Fixtures, run_case

    fx = Fixtures(Path(sys.argv[1]))
    for line in sys.stdin:
        case = json.loads(line)
        try:
            outcome, detail = run_case(fx, case["kind"], case["seed"])
        except Exception as e:  # anything but a clean refusal is a bug of sparsec (or of the fuzzer)
            tb = traceback.extract_tb(e.__traceback__)[-1]
            outcome, detail = "bug", f"{type(e).__name__}: {str(e)[:300]} at {tb.filename}:{tb.lineno}"
        answers.write(json.dumps({"outcome": outcome, "detail": detail[:500]}) + "\n")


if __name__ == "__main__":
    main()
