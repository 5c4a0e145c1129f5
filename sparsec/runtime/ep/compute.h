// Running one sparsec node: everything Compile prepared for it (NodeKernel) and the OrtNodeComputeInfo whose
// Compute flattens X, checks the run-time inputs, allocates Y and calls the TVM kernel.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kernel_lib.h"
#include "node_config.h"
#include "ort_util.h"
#include "weights.h"

namespace sparsec {

// A kernel operand that is not a packed array (X, bias, residual): either a constant the EP copied at Compile,
// or the input at `input_index` of the fused node at run time.
struct Operand {
  bool present = false;
  bool constant = false;
  HostArray value;         // when constant
  size_t input_index = 0;  // when not constant
};

// Immutable after Compile, shared by every Compute call (so Compute needs no locks).
struct NodeKernel {
  std::string node_name;  // the sparsec node's name, in every error message
  NodeConfig cfg;
  Operand x, bias, residual;
  Operand zero_point;  // int8:1x4 only: X's zero point (uint8, one value), passed to the kernel after the arrays
  Operand scale;       // int8:1x4 with cfg.scale: float32, cfg.scale values, passed after the zero point
  std::vector<HostArray> packed;  // format order = kernel argument order
  std::shared_ptr<const KernelFunction> fn;
};

// Creates / destroys the compute info ORT calls for a fused node.
OrtNodeComputeInfo* NewComputeInfo(std::shared_ptr<const NodeKernel> kernel);
void DeleteComputeInfo(OrtNodeComputeInfo* info);

}  // namespace sparsec
