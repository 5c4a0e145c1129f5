// The per-node configuration of a sparsec node: the flat "key=value;..." string in the EPContext attribute
// ep_cache_context (docs/internals.md, "sparsec nodes"). Pure C++, no ORT types, so it is easy to reason about.
#pragma once

#include <cstdint>
#include <string>

namespace sparsec {

enum class FormatKind { kCsr, kBsr, kNm, kInt8 };

struct FormatSpec {
  FormatKind kind = FormatKind::kCsr;
  int64_t a = 0;  // bsr, int8: R (output rows per block); nm: N (kept per group)
  int64_t b = 0;  // bsr, int8: C (input columns per block); nm: M (group size)
  std::string text;  // as written in the node, for messages
};

// A 2-D NCHW convolution's static geometry (op=conv; docs/internals.md, "Convolutions"). OH/OW are derived.
struct ConvGeom {
  int64_t C = 0, H = 0, W = 0, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0, pb = 0, pr = 0;
  int64_t OH = 0, OW = 0;
  bool dynamic = false;  // H=0;W=0 in the node: the spatial size is read from X at run time (OH, OW unused)
};

// OH, OW of ``g`` on an H x W input; false when the output would be empty or over 2^31-1 pixels.
bool ConvOutput(const ConvGeom& g, int64_t H, int64_t W, int64_t* OH, int64_t* OW);

struct NodeConfig {
  std::string kernel;  // PackedFunc symbol in the kernel library
  FormatSpec format;
  int64_t K = 0;  // input features
  int64_t N = 0;  // output features
  int64_t scale = 0;  // int8:1x4 only: run-time scale values multiplied into the int32 product (0, 1 or N)
  bool bias = false;
  bool residual = false;
  std::string act = "none";  // applied by the kernel; the EP only checks it is known
  bool conv = false;          // op=conv: X [B, C, H, W] -> Y [B, N, OH, OW]; else matmul (op absent or "matmul")
  ConvGeom geom;              // when conv
};

// True when the string announces a sparsec configuration (the node is ours to claim).
bool IsSparsecContext(const std::string& ctx);

// Parses "csr" | "bsr:RxC" | "nm:N:M" | "int8:1x4". Returns false and sets *err on anything else.
// int8:1x4 (docs/internals.md): X is uint8 and the node has one more input after the packed arrays, X's zero point
// (a uint8 scalar), then with scale=1 or scale=N a float32 scale input (1 or N values) before the bias.
bool ParseFormat(const std::string& text, FormatSpec* out, std::string* err);

// Parses the whole ep_cache_context. Unknown keys are ignored (forward compatibility); required keys:
// sparsec=1, kernel, format, K, N; with op=conv also C, H, W, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, which must
// give K = C*kh*kw and a non-empty output. Returns false and sets *err with the offending key on failure.
bool ParseNodeConfig(const std::string& ctx, NodeConfig* out, std::string* err);

}  // namespace sparsec
