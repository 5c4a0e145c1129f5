"""Sizes a model's graph implies for its symbolic input dims: a position embedding of fixed size added after the
convs, a Concat of two branches that downsample by different factors, a Reshape to a constant shape. ORT's symbolic
shape inference (onnxruntime.tools.symbolic_shape_infer, auto_merge) records each such meeting of a symbolic size
with a literal, or of two expressions of one input dim, as a suggested merge; here each input dim that appears alone
in such merges gets the smallest size that satisfies all of them (``floor((H - 1) / 16) + 1 == 20`` gives H = 305).

Used to choose the sizes of random inputs for verification and benchmarks (``verify.accepted_dims``); best effort:
a model the inference cannot take, or merges it cannot solve, imply nothing, and the usual sizes are tried.
"""

from __future__ import annotations

from typing import Any

import onnx

SEARCH = 4096  # largest size tried when solving a merge for an input dim
_PREFIX = "sparsec_dim"  # names given to unnamed input dims so the inference reports them


def _named(model: onnx.ModelProto, labels: dict[str, str]) -> onnx.ModelProto:
    """A copy of ``model`` whose unnamed symbolic input dims carry a name (``labels``: that name -> the
    'input[axis]' label verification uses for them)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name for i in out.graph.initializer}
    for vi in out.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.HasField("dim_value") and not d.dim_param:
                d.dim_param = f"{_PREFIX}{len(labels)}"
                labels[d.dim_param] = f"{vi.name}[{axis}]"
    return out


def _merges(model: onnx.ModelProto) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
    """The inference's symbols (name -> sympy expression) and its suggested merges as (expression, literal int or
    expression) pairs. Raises whatever the inference raises."""
    from .shapes import symbolic_inference

    ssi, _ = symbolic_inference(model)  # the merges are recorded whether or not every shape was inferred
    symbols = dict(ssi.symbolic_dims_)
    pairs = []
    for key, value in ssi.suggested_merge_.items():
        if key in symbols:
            pairs.append((symbols[key], value if isinstance(value, int) else symbols.get(value)))
    return symbols, [(lhs, rhs) for lhs, rhs in pairs if rhs is not None]


def _solve(symbol: Any, constraints: list[tuple[Any, Any]]) -> int | None:
    """The smallest size >= 1 meeting every ``lhs == rhs`` of one symbol; None when none does, or when every size
    does (``N == floor(1.0 * N)`` after a Resize by 1 constrains nothing)."""
    import sympy

    fns = [sympy.lambdify(symbol, lhs - rhs, modules="math") for lhs, rhs in constraints]

    def meets(size: int) -> bool:
        try:
            return all(abs(f(size)) < 0.5 for f in fns)
        except (ArithmeticError, ValueError):
            return False

    found = [size for size in range(1, SEARCH + 1) if meets(size)]
    return found[0] if found and len(found) < SEARCH else None


def implied_dims(model: onnx.ModelProto) -> dict[str, int]:
    """Input dim label ('name', or 'input[axis]' for an unnamed one) -> the size the graph implies for it."""
    labels: dict[str, str] = {}
    try:
        symbols, merges = _merges(_named(model, labels))
    except Exception:  # an op or a model the inference does not take: it implies nothing
        return {}
    per_symbol: dict[str, list[tuple[Any, Any]]] = {}
    for lhs, rhs in merges:
        free = lhs.free_symbols | (rhs.free_symbols if hasattr(rhs, "free_symbols") else set())
        if len(free) == 1:
            per_symbol.setdefault(str(next(iter(free))), []).append((lhs, rhs))
    out: dict[str, int] = {}
    for name, constraints in per_symbol.items():
        if name not in symbols:
            continue
        size = _solve(symbols[name], constraints)
        if size is not None:
            out[labels.get(name, name)] = size
    return out
