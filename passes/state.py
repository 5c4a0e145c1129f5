"""What the stages of one compile share: the target, the options, progress messages and the layer records.

Each pass is an ``onnx_ir`` pass over the one in-memory model; the records (``sparsec.layer.Layer``, frozen) travel
beside it here, one per layer in graph order, each stage replacing a record with its extended copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from sparsec.layer import Layer
from sparsec.options import CompileOptions
from sparsec.targets.base import Progress, Target, quiet


@dataclass
class Compilation:
    target: Target
    options: CompileOptions
    source: onnx.ModelProto  # the model as loaded: how artifacts write value_info and opsets (passes/graph.to_proto)
    say: Progress = quiet
    refuse_nonfinite: bool = True  # compile refuses NaN/Inf weights after select; inspect reports them
    layers: dict[str, Layer] = field(default_factory=dict)  # by layer name, in graph order
    # values shrink narrowed: name -> (channel axis, the original channels kept); per-layer verification reads it
    narrowed: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)

    def update(self, layer: Layer) -> None:
        """Replace a layer's record by its extended copy."""
        self.layers[layer.name] = layer

    def records(self) -> list[Layer]:
        return list(self.layers.values())
