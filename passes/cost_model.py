"""Cost model: predicted latency of one layer in each format on a target, from measured constants.

Per (ISA, format) and per representative batch size ``m`` in the table (1, 16, 128), the time of one layer is
``t_us = M * (a * stored + b * N) / 1000 + c`` with ``stored`` the number of stored weight values (explicit zeros in
blocks and N:M slots included) and, for ``dense`` (ORT's MatMul), ``stored = K * N``. The bucket nearest to M (in
log scale) is used. Constants are fitted from measurements by ``python -m sparsec.passes.calibrate`` and stored in
``cost_data/<target>.json`` with the command and host that produced them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sparsec.errors import SparsecError

DATA_DIR = Path(__file__).with_name("cost_data")


@dataclass(frozen=True)
class CostModel:
    """Latency predictions for one target/ISA, read from a calibration table."""

    target: str
    isa: str
    table: dict[str, dict[str, list[float]]]  # format -> bucket m -> [a_ns, b_ns, c_us]
    source: str

    def buckets(self, fmt: str) -> dict[int, list[float]]:
        key = fmt if fmt in self.table else fmt.split(":", 1)[0]
        if key not in self.table:
            raise KeyError(fmt)
        return {int(m): v for m, v in self.table[key].items()}

    def knows(self, fmt: str) -> bool:
        try:
            self.buckets(fmt)
        except KeyError:
            return False
        return True

    def predict_us(self, fmt: str, k: int, n: int, stored: int, m: int) -> float:
        """Predicted microseconds for Y[m, n] = X[m, k] @ W^T with ``stored`` weight values in ``fmt``."""
        table = self.buckets(fmt)
        bucket = min(table, key=lambda b: abs(math.log(b) - math.log(max(m, 1))))
        a, b, c = table[bucket]
        if fmt == "dense":
            stored = k * n
        return m * (a * stored + b * n) / 1000.0 + c


@cache
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def cost_model(target: str, isa: str) -> CostModel:
    """The calibrated model for ``target``/``isa``; an ISA without its own table uses the target's nearest one."""
    path = DATA_DIR / f"{target}.json"
    if not path.is_file():
        raise SparsecError(f"no cost model for target {target!r} ({path} missing): run sparsec tune-cost-model")
    data = _load(path)
    tables = data["isa"]
    chosen = isa if isa in tables else sorted(tables)[0]
    source = data.get("sources", {}).get(chosen, data.get("source", ""))  # per-ISA source when tables were merged
    return CostModel(target, chosen, tables[chosen], str(source))
