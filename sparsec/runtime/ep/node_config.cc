#include "node_config.h"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <map>

namespace sparsec {
namespace {

// Strict non-negative decimal integer (std::stoll would accept "12abc" and leading spaces).
bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

bool ParseFlag(const std::string& s, bool* out) {
  if (s == "0" || s == "1") {
    *out = s == "1";
    return true;
  }
  return false;
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// Reads the conv keys of an op=conv node and derives OH/OW. Every value is bounded so no product overflows.
bool ParseConv(std::map<std::string, std::string>& kv, NodeConfig* out, std::string* err) {
  struct Key {
    const char* name;
    int64_t* dst;
    int64_t lo, hi;
  };
  ConvGeom& g = out->geom;
  const int64_t kDim = 2147483647, kSmall = 4096;
  const Key keys[] = {{"C", &g.C, 1, kDim},      {"H", &g.H, 0, kDim},      {"W", &g.W, 0, kDim},
                      {"kh", &g.kh, 1, kSmall},  {"kw", &g.kw, 1, kSmall},  {"sh", &g.sh, 1, kSmall},
                      {"sw", &g.sw, 1, kSmall},  {"dh", &g.dh, 1, kSmall},  {"dw", &g.dw, 1, kSmall},
                      {"pt", &g.pt, 0, kSmall},  {"pl", &g.pl, 0, kSmall},  {"pb", &g.pb, 0, kSmall},
                      {"pr", &g.pr, 0, kSmall}};
  for (const Key& k : keys) {
    if (!kv.count(k.name)) {
      *err = std::string("op=conv lacks required key '") + k.name + "'";
      return false;
    }
    if (!ParseInt(kv[k.name], k.dst) || *k.dst < k.lo || *k.dst > k.hi) {
      *err = std::string(k.name) + "='" + kv[k.name] + "' is out of range " + std::to_string(k.lo) + ".." +
             std::to_string(k.hi);
      return false;
    }
  }
  if (g.C * g.kh * g.kw != out->K) {
    *err = "conv geometry C*kh*kw=" + std::to_string(g.C * g.kh * g.kw) + " differs from K=" + std::to_string(out->K);
    return false;
  }
  if ((g.H == 0) != (g.W == 0)) {
    *err = "conv geometry: H and W are both 0 (sized at run time) or both positive";
    return false;
  }
  g.dynamic = g.H == 0;
  if (!g.dynamic && !ConvOutput(g, g.H, g.W, &g.OH, &g.OW)) {
    *err = "conv geometry gives an empty output or a spatial size over 2^31-1";
    return false;
  }
  out->conv = true;
  return true;
}

}  // namespace

bool ConvOutput(const ConvGeom& g, int64_t H, int64_t W, int64_t* OH, int64_t* OW) {
  const int64_t kDim = 2147483647;
  if (H < 1 || W < 1 || H > kDim || W > kDim || H * W > kDim) return false;
  const int64_t eh = H + g.pt + g.pb - g.dh * (g.kh - 1) - 1, ew = W + g.pl + g.pr - g.dw * (g.kw - 1) - 1;
  if (eh < 0 || ew < 0) return false;
  *OH = eh / g.sh + 1;
  *OW = ew / g.sw + 1;
  return *OH * *OW <= kDim;
}

bool IsSparsecContext(const std::string& ctx) {
  static const std::string kPrefix = "sparsec=1";
  return ctx.compare(0, kPrefix.size(), kPrefix) == 0 && (ctx.size() == kPrefix.size() || ctx[kPrefix.size()] == ';');
}

bool ParseFormat(const std::string& text, FormatSpec* out, std::string* err) {
  out->text = text;
  if (text == "csr") {
    out->kind = FormatKind::kCsr;
    return true;
  }
  if (text.rfind("bsr:", 0) == 0) {
    std::string rc = text.substr(4);
    size_t x = rc.find('x');
    if (x != std::string::npos && ParseInt(rc.substr(0, x), &out->a) && ParseInt(rc.substr(x + 1), &out->b) &&
        out->a > 0 && out->b > 0) {
      out->kind = FormatKind::kBsr;
      return true;
    }
  } else if (text.rfind("nm:", 0) == 0) {
    std::string nm = text.substr(3);
    size_t c = nm.find(':');
    // positions are uint8, so M <= 256 keeps every in-group offset representable.
    if (c != std::string::npos && ParseInt(nm.substr(0, c), &out->a) && ParseInt(nm.substr(c + 1), &out->b) &&
        out->a > 0 && out->a <= out->b && out->b <= 256) {
      out->kind = FormatKind::kNm;
      return true;
    }
  }
  if (text == "int8:1x4") {
    out->kind = FormatKind::kInt8;
    out->a = 1;
    out->b = 4;
    return true;
  }
  *err = "unsupported format '" + text + "' (expected csr, bsr:RxC, nm:N:M or int8:1x4)";
  return false;
}

bool ParseNodeConfig(const std::string& ctx, NodeConfig* out, std::string* err) {
  std::map<std::string, std::string> kv;
  size_t pos = 0;
  while (pos <= ctx.size()) {
    size_t end = ctx.find(';', pos);
    if (end == std::string::npos) end = ctx.size();
    std::string item = ctx.substr(pos, end - pos);
    size_t eq = item.find('=');
    if (eq != std::string::npos) kv[item.substr(0, eq)] = item.substr(eq + 1);
    pos = end + 1;
  }
  if (kv["sparsec"] != "1") {
    *err = "ep_cache_context does not start with sparsec=1";
    return false;
  }
  for (const char* key : {"kernel", "format", "K", "N"}) {
    if (!kv.count(key)) {
      *err = std::string("ep_cache_context lacks required key '") + key + "'";
      return false;
    }
  }
  out->kernel = kv["kernel"];
  if (!IsIdentifier(out->kernel)) {
    *err = "kernel symbol '" + out->kernel + "' is not a C identifier";
    return false;
  }
  if (!ParseFormat(kv["format"], &out->format, err)) return false;
  if (!ParseInt(kv["K"], &out->K) || out->K <= 0) {
    *err = "K='" + kv["K"] + "' is not a positive integer";
    return false;
  }
  if (!ParseInt(kv["N"], &out->N) || out->N <= 0) {
    *err = "N='" + kv["N"] + "' is not a positive integer";
    return false;
  }
  if (kv.count("bias") && !ParseFlag(kv["bias"], &out->bias)) {
    *err = "bias='" + kv["bias"] + "' is not 0 or 1";
    return false;
  }
  if (kv.count("residual") && !ParseFlag(kv["residual"], &out->residual)) {
    *err = "residual='" + kv["residual"] + "' is not 0 or 1";
    return false;
  }
  if (kv.count("act")) out->act = kv["act"];
  static const char* const kActs[] = {"none", "relu", "gelu", "sigmoid", "clip", "silu", "hardswish"};
  if (std::find(std::begin(kActs), std::end(kActs), out->act) == std::end(kActs)) {
    *err = "unknown activation '" + out->act + "'";
    return false;
  }
  const std::string op = kv.count("op") ? kv["op"] : "matmul";
  if (kv.count("scale") && (!ParseInt(kv["scale"], &out->scale) || (out->scale != 1 && out->scale != out->N))) {
    *err = "scale='" + kv["scale"] + "' is not 1 or N=" + std::to_string(out->N);
    return false;
  }
  if (out->format.kind == FormatKind::kInt8 && op != "matmul") {
    *err = "format int8:1x4 runs matmuls only (op='" + op + "')";
    return false;
  }
  if (out->scale && out->format.kind != FormatKind::kInt8) {
    *err = "scale is an int8:1x4 epilogue (format " + out->format.text + ")";
    return false;
  }
  if (op == "conv") return ParseConv(kv, out, err);
  if (op != "matmul") {
    *err = "unknown op '" + op + "' (expected matmul or conv)";
    return false;
  }
  return true;
}

}  // namespace sparsec
