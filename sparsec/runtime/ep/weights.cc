#include "weights.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace sparsec {
namespace {

std::string Shape(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

// `why` says where the expected shape comes from when it is not obvious (e.g. another array's length).
bool Expect(const HostArray& a, DType dtype, const std::vector<int64_t>& shape, std::string* err,
            const std::string& why = "") {
  if (a.dtype != dtype || a.shape != shape) {
    *err = "packed array '" + a.name + "' is " + DTypeName(a.dtype) + Shape(a.shape) + ", expected " +
           DTypeName(dtype) + Shape(shape) + (why.empty() ? "" : " (" + why + ")");
    return false;
  }
  return true;
}

// indptr must start at 0, never decrease and end at `total` (the number of stored entries/blocks).
bool CheckIndptr(const HostArray& indptr, int64_t total, std::string* err) {
  const int32_t* p = indptr.As<int32_t>();
  int64_t n = indptr.NumElements();
  if (p[0] != 0) {
    *err = "packed array '" + indptr.name + "' must start at 0, got " + std::to_string(p[0]);
    return false;
  }
  for (int64_t i = 1; i < n; ++i) {
    if (p[i] < p[i - 1]) {
      *err = "packed array '" + indptr.name + "' is not monotonic at entry " + std::to_string(i) + " (" +
             std::to_string(p[i - 1]) + " then " + std::to_string(p[i]) + ")";
      return false;
    }
  }
  if (p[n - 1] != total) {
    *err = "packed array '" + indptr.name + "' ends at " + std::to_string(p[n - 1]) + ", expected " +
           std::to_string(total) + " (number of stored entries)";
    return false;
  }
  return true;
}

bool BadIndex(const HostArray& a, int64_t at, int64_t value, const std::string& allowed, std::string* err) {
  *err = "packed array '" + a.name + "' entry " + std::to_string(at) + " = " + std::to_string(value) +
         " is out of range (" + allowed + ")";
  return false;
}

bool ValidateCsr(const NodeConfig& c, const std::vector<HostArray>& a, std::string* err) {
  const HostArray &values = a[0], &indices = a[1], &indptr = a[2];
  if (values.shape.size() != 1) return Expect(values, DType::kF32, {-1}, err);
  int64_t nnz = values.shape[0];
  if (!Expect(values, DType::kF32, {nnz}, err) ||
      !Expect(indices, DType::kI32, {nnz}, err, "one per entry of '" + values.name + "'") ||
      !Expect(indptr, DType::kI32, {c.N + 1}, err, "N+1") || !CheckIndptr(indptr, nnz, err))
    return false;
  const int32_t* ix = indices.As<int32_t>();
  for (int64_t i = 0; i < nnz; ++i)
    if (ix[i] < 0 || ix[i] >= c.K) return BadIndex(indices, i, ix[i], "0 <= k < K=" + std::to_string(c.K), err);
  return true;
}

bool ValidateBsr(const NodeConfig& c, const std::vector<HostArray>& a, std::string* err) {
  const int64_t R = c.format.a, C = c.format.b;
  if (c.N < R || c.K < C) {
    *err = "format " + c.format.text + " needs N >= R and K >= C, got N=" + std::to_string(c.N) +
           " K=" + std::to_string(c.K);
    return false;
  }
  const HostArray &data = a[0], &indices = a[1], &indptr = a[2];
  if (data.shape.size() != 3) return Expect(data, DType::kF32, {-1, R, C}, err);
  int64_t nnzb = data.shape[0];
  int64_t block_rows = (c.N + R - 1) / R;
  if (!Expect(data, DType::kF32, {nnzb, R, C}, err, "[nnzb, R, C]") ||
      !Expect(indices, DType::kI32, {nnzb}, err, "one per block of '" + data.name + "'") ||
      !Expect(indptr, DType::kI32, {block_rows + 1}, err, "ceil(N/R)+1") || !CheckIndptr(indptr, nnzb, err))
    return false;
  // A block starts at cs = min(j*C, K-C): a multiple of C, or the shifted last column K-C.
  const int32_t* ix = indices.As<int32_t>();
  for (int64_t i = 0; i < nnzb; ++i) {
    int64_t cs = ix[i];
    if (cs < 0 || cs > c.K - C || (cs % C != 0 && cs != c.K - C))
      return BadIndex(indices, i, cs, "block start column: a multiple of C=" + std::to_string(C) +
                                          " or K-C=" + std::to_string(c.K - C) + ", within [0, K-C]",
                      err);
  }
  return true;
}

bool ValidateNm(const NodeConfig& c, const std::vector<HostArray>& a, std::string* err) {
  const int64_t keep = c.format.a, M = c.format.b;
  const int64_t groups = (c.K + M - 1) / M;
  const int64_t slots = groups * keep;
  const HostArray &values = a[0], &positions = a[1];
  const std::string why = "[N, ceil(K/M)*n] = [" + std::to_string(c.N) + ", " + std::to_string(slots) + "]";
  if (!Expect(values, DType::kF32, {c.N, slots}, err, why) || !Expect(positions, DType::kU8, {c.N, slots}, err, why))
    return false;
  // Slot (g, t) reads X at column g*M + pos: pos < M and the column < K (the last group may be short).
  const uint8_t* p = positions.As<uint8_t>();
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t s = 0; s < slots; ++s) {
      int64_t pos = p[n * slots + s], col = (s / keep) * M + pos;
      if (pos >= M || col >= c.K)
        return BadIndex(positions, n * slots + s, pos,
                        "offset < M=" + std::to_string(M) + " and column g*M+offset < K=" + std::to_string(c.K), err);
    }
  return true;
}

// int8:1x4: words (4 int8 values each), their word positions (columns 4w..4w+3; w = K/4 rounded down is the
// shifted last block K-4..K-1 when K is not a multiple of 4), row pointers, row sums.
bool ValidateInt8(const NodeConfig& c, const std::vector<HostArray>& a, std::string* err) {
  if (c.K < 4) {
    *err = "format int8:1x4 needs K >= 4, got K=" + std::to_string(c.K);
    return false;
  }
  const HostArray &words = a[0], &indices = a[1], &indptr = a[2], &sums = a[3];
  if (words.shape.size() != 1) return Expect(words, DType::kI32, {-1}, err);
  const int64_t nb = words.shape[0];
  if (!Expect(words, DType::kI32, {nb}, err) ||
      !Expect(indices, DType::kI32, {nb}, err, "one per block of '" + words.name + "'") ||
      !Expect(indptr, DType::kI32, {c.N + 1}, err, "N+1") || !CheckIndptr(indptr, nb, err) ||
      !Expect(sums, DType::kI32, {c.N}, err, "N"))
    return false;
  const int64_t last = c.K % 4 ? c.K / 4 : c.K / 4 - 1;
  const int32_t* ix = indices.As<int32_t>();
  for (int64_t i = 0; i < nb; ++i)
    if (ix[i] < 0 || ix[i] > last) return BadIndex(indices, i, ix[i], "word 0 <= w <= " + std::to_string(last), err);
  return true;
}

}  // namespace

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kI32: return "int32";
    case DType::kU8: return "uint8";
  }
  return "?";
}

size_t DTypeSize(DType t) { return t == DType::kU8 ? 1 : 4; }

int64_t HostArray::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::shared_ptr<void> AllocAligned(size_t bytes) {
  constexpr size_t kAlign = 64;
  size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  if (rounded == 0) rounded = kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) return nullptr;
  std::memset(p, 0, rounded);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

HostArray CopyToHost(std::string name, DType dtype, std::vector<int64_t> shape, const void* src) {
  HostArray a;
  a.name = std::move(name);
  a.dtype = dtype;
  a.shape = std::move(shape);
  a.data = AllocAligned(a.NumBytes());
  if (a.data && src && a.NumBytes()) std::memcpy(a.data.get(), src, a.NumBytes());
  return a;
}

size_t PackedArrayCount(const FormatSpec& f) {
  switch (f.kind) {
    case FormatKind::kNm: return 2;
    case FormatKind::kInt8: return 4;
    default: return 3;
  }
}

bool ValidatePacked(const NodeConfig& cfg, const std::vector<HostArray>& arrays, std::string* err) {
  if (arrays.size() != PackedArrayCount(cfg.format)) {
    *err = "format " + cfg.format.text + " has " + std::to_string(PackedArrayCount(cfg.format)) +
           " packed arrays, node has " + std::to_string(arrays.size());
    return false;
  }
  for (const HostArray& a : arrays)
    if (!a.data) {
      *err = "out of memory copying packed array '" + a.name + "'";
      return false;
    }
  switch (cfg.format.kind) {
    case FormatKind::kCsr: return ValidateCsr(cfg, arrays, err);
    case FormatKind::kBsr: return ValidateBsr(cfg, arrays, err);
    case FormatKind::kNm: return ValidateNm(cfg, arrays, err);
    case FormatKind::kInt8: return ValidateInt8(cfg, arrays, err);
  }
  return false;
}

}  // namespace sparsec
