"""Machine description and Markdown tables for the benchmark results."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                info.setdefault(key.strip(), val.strip())
    except OSError:
        pass
    return info


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"


def machine() -> dict[str, Any]:
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    return {
        "cpu": cpu.get("model name", platform.processor() or "?"),
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "avx2": "avx2" in flags,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "onnxruntime": _version("onnxruntime"),
        "tvm": _version("apache-tvm"),
        "tvm_ffi": _version("apache-tvm-ffi"),
        "python": platform.python_version(),
        "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS", "(unset)"),
    }


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def machine_md(m: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in m["load_avg"]) if m.get("load_avg") else "?"
    return (
        f"{m['cpu']}, {m['cores']} cores, AVX-512 {_yn(m['avx512'])} (AVX2 {_yn(m['avx2'])}); "
        f"onnxruntime {m['onnxruntime']}, apache-tvm {m['tvm']} (tvm-ffi {m['tvm_ffi']}), Python {m['python']}; "
        f"TVM_NUM_THREADS={m['TVM_NUM_THREADS']}; load average at start {load}"
    )


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


BUSY = 0.2  # other processes' CPU share above which a row is flagged


def _flag(r: dict[str, Any]) -> str:
    return " *" if (r.get("busy") or 0.0) > BUSY else ""


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}"


def layers_md(results: list[dict[str, Any]]) -> str:
    """One line per (K x N, pattern, M): ORT ms, then per compiled format sparsec ms and the ratio ORT/sparsec."""
    fmts = list(dict.fromkeys("auto" if r["format"] == "auto" else "forced" for r in results))
    header = ["K x N", "pattern", "M", "ORT dense ms"]
    for f in fmts:
        header += ["sparsec ms (format)", "speedup"] if f == "forced" else ["auto: format, ms", "auto speedup"]
    keyed: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    errors = []
    for r in results:
        if "error" in r:
            errors.append(f"{r['K']}x{r['N']} {r['pattern']} --format {r['format']}: {r['error']}")
            continue
        slot = "auto" if r["format"] == "auto" else "forced"
        keyed.setdefault((r["K"], r["N"], r["pattern"], r["M"]), {})[slot] = r
    rows = []
    for (k, n, pat, m), by in keyed.items():
        ort = by.get("forced", by.get("auto", {})).get("ort_ms")
        row = [f"{k}x{n}", pat, str(m), _ms(ort)]
        for f in fmts:
            r = by.get(f)
            if r is None:
                row += ["-", "-"]
            elif f == "forced":
                row += [f"{_ms(r['sparsec_ms'])} ({r['format']})", f"{r['ratio']:.2f}x{_flag(r)}"]
            else:
                row += [f"{r['chosen']} {_ms(r['sparsec_ms'])}", f"{r['ratio']:.2f}x{_flag(r)}"]
        rows.append(row)
    out = md_table(header, rows)
    if errors:
        out += "\n\nFailed: " + "; ".join(errors)
    return out


def _ds(ds: dict[str, Any]) -> tuple[str, str]:
    if ds.get("status") != "ok":
        return ds.get("status", "n/a"), "-"
    frac = ds.get("fraction_of_supported_ops")
    frac_s = f", {frac:.0%} ops" if isinstance(frac, float) else ""
    return f"{_ms(ds['deepsparse_ms'])}{frac_s}", f"{ds['ratio_ort_over_deepsparse']:.2f}x{_flag(ds)}"


def e2e_md(results: list[dict[str, Any]]) -> str:
    header = [
        "pruning", "batch", "sparsec format", "ORT dense ms", "sparsec ms", "speedup",
        "sparsec ms (no spin)", "speedup (no spin)", "DeepSparse 1.8.0 ms", "DeepSparse speedup", "max rel err",
    ]  # fmt: skip
    rows, errors, seen = [], [], set()
    for r in results:
        if "batch" not in r:
            errors.append(f"{r['pruning']}: {r['error']}")
            continue
        key = (r["pruning"], r["batch"])
        ds_ms, ds_ratio = _ds(r["deepsparse"]) if key not in seen else ("(as above)", "")
        seen.add(key)
        head = [r["pruning"], str(r["batch"])]
        if "error" in r:
            errors.append(f"{r['pruning']} batch {r['batch']} --format {r['format']}: {r['error']}")
            rows.append(head + [f"{r['format']}: failed (below)", "-", "-", "-", "-", "-", ds_ms, ds_ratio, "-"])
            continue
        rows.append(
            head + [
                f"{r['format']} ({r['chosen']})", _ms(r["ort_ms"]),
                _ms(r["sparsec_ms"]), f"{r['ratio']:.2f}x{_flag(r)}",
                _ms(r["sparsec_nospin_ms"]), f"{r['ratio_nospin']:.2f}x{_flag(r)}",
                ds_ms, ds_ratio, f"{r['max_rel_error']:.1e}",
            ]
        )  # fmt: skip
    out = md_table(header, rows)
    if errors:
        out += "\n\nFailed: " + "; ".join(errors)
    return out
