"""Weights with a given sparsity pattern, in nn.Linear layout W[N, K] (N outputs, K inputs; see docs/internals.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pattern:
    """A sparsity pattern and the sparsec format that matches it."""

    kind: str  # "unstructured" | "block" | "nm"
    sparsity: float = 0.0  # fraction of zeros (unstructured / block)
    rows: int = 1  # block rows (outputs) or N of N:M
    cols: int = 1  # block columns (inputs) or M of N:M

    @property
    def name(self) -> str:
        if self.kind == "unstructured":
            return f"unstructured {self.sparsity:.0%}"
        if self.kind == "block":
            return f"block {self.rows}x{self.cols} {self.sparsity:.0%}"
        return f"{self.rows}:{self.cols}"

    @property
    def format(self) -> str:
        if self.kind == "unstructured":
            return "csr"
        if self.kind == "block":
            return f"bsr:{self.rows}x{self.cols}"
        return f"nm:{self.rows}:{self.cols}"

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "_").replace("%", "").replace(":", "-")


def _values(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    w = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    w[w == 0.0] = 0.05  # kept entries are truly nonzero
    return w


def _keep_exact(rng: np.random.Generator, total: int, keep: int) -> np.ndarray:
    mask = np.zeros(total, bool)
    mask[rng.choice(total, size=keep, replace=False)] = True
    return mask


def make_weight(p: Pattern, n: int, k: int, seed: int = 0) -> np.ndarray:
    """W[n, k] float32 following ``p`` exactly (block grids anchored at 0; a partial edge block is cut off)."""
    rng = np.random.default_rng(seed)
    w = _values(rng, (n, k))
    if p.kind == "unstructured":
        mask = _keep_exact(rng, n * k, round((1 - p.sparsity) * n * k)).reshape(n, k)
    elif p.kind == "block":
        br, bc = -(-n // p.rows), -(-k // p.cols)
        blocks = _keep_exact(rng, br * bc, max(1, round((1 - p.sparsity) * br * bc))).reshape(br, bc)
        mask = np.kron(blocks, np.ones((p.rows, p.cols), bool))[:n, :k]
    elif p.kind == "nm":
        groups = -(-k // p.cols)
        order = rng.random((n, groups, p.cols)).argsort(axis=2)
        mask = (order < p.rows).reshape(n, groups * p.cols)[:, :k]
    else:
        raise ValueError(f"unknown pattern kind {p.kind!r}")
    return np.where(mask, w, np.float32(0.0))


def sweep_patterns() -> list[Pattern]:
    out = [Pattern("unstructured", s) for s in (0.9, 0.8)]
    out += [Pattern("block", s, r, c) for r, c in ((4, 4), (16, 1)) for s in (0.9, 0.8)]
    out.append(Pattern("nm", 0.5, 2, 4))
    return out
