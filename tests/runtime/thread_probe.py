"""Run in a fresh process by test_ep_threads.py: how many threads exist before and after an artifact's kernels run.

Prints JSON: threads after creating the session, after 20 runs through the session (kernels on ORT's pool: no new
threads), and after calling one kernel of the same library directly through TVM (TVM's own pool starts: new
threads), plus the session's max relative error against ORT on the original model.
python -m tests.runtime.thread_probe ARTIFACT ORIGINAL.onnx
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def direct_call(artifact: Path, model: onnx.ModelProto, rows: int) -> None:
    """Call the first sparsec node's kernel with TVM's own loader (its parallel loop then uses TVM's pool)."""
    import tvm

    from sparsec.node import decode

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type == "EPContext"]
    texts = [next(a.s for a in n.attribute if a.name == "ep_cache_context").decode() for n in nodes]
    infos = [decode(t) for t in texts]
    node, cfg = next((n, c) for n, c in zip(nodes, infos, strict=True) if not c.epilogue.residual)
    args = [np.random.default_rng(0).standard_normal((rows, cfg.K)).astype(np.float32)]
    args += [inits[name] for name in node.input[1:]]
    args.append(np.zeros((rows, cfg.N), np.float32))
    lib = tvm.runtime.load_module(str(artifact / "kernels.so"))
    lib[cfg.symbol](*[tvm.runtime.tensor(a) for a in args])


def main() -> None:
    import onnxruntime as ort

    from sparsec.runtime import InferenceSession

    artifact, original = Path(sys.argv[1]), sys.argv[2]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = InferenceSession(artifact, so)
    base = ort.InferenceSession(original, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((2, 64, 384)).astype(np.float32)
    created = threads()
    for _ in range(20):
        got = sess.run(None, {"x": x})
    after_runs = threads()
    ref = base.run(None, {"x": x})
    err = max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-3)) for g, r in zip(got, ref, strict=True))
    direct_call(artifact, onnx.load(str(artifact / "model.onnx")), 128)
    print(json.dumps({"created": created, "after_runs": after_runs, "after_tvm": threads(), "error": err}))


if __name__ == "__main__":
    main()
