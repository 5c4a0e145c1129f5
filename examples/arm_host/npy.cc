#include "npy.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace arm_host {

namespace {

const char kMagic[] = "\x93NUMPY";

std::string Field(const std::string& header, const std::string& key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw std::runtime_error("npy header has no '" + key + "'");
  at = header.find(':', at);
  size_t start = header.find_first_not_of(' ', at + 1);
  if (header[start] == '(') return header.substr(start, header.find(')', start) - start + 1);
  if (header[start] == '\'') return header.substr(start + 1, header.find('\'', start + 1) - start - 1);
  return header.substr(start, header.find_first_of(",}", start) - start);
}

std::vector<int64_t> ParseShape(const std::string& tuple) {
  std::vector<int64_t> shape;
  std::string num;
  for (char c : tuple) {
    if (c >= '0' && c <= '9') {
      num += c;
    } else if (!num.empty()) {
      shape.push_back(std::stoll(num));
      num.clear();
    }
  }
  return shape;
}

}  // namespace

size_t ItemSize(const std::string& descr) {
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<f8" || descr == "<i8") return 8;
  if (descr == "<f2") return 2;
  if (descr == "|b1" || descr == "|u1" || descr == "|i1") return 1;
  return 0;
}

NpyArray ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, kMagic, 6) != 0) throw std::runtime_error(path + ": not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(header_len, '\0');
  f.read(&header[0], header_len);
  if (!f) throw std::runtime_error(path + ": truncated .npy header");
  NpyArray a;
  a.descr = Field(header, "descr");
  if (Field(header, "fortran_order") != "False") throw std::runtime_error(path + ": Fortran order is not supported");
  a.shape = ParseShape(Field(header, "shape"));
  size_t item = ItemSize(a.descr);
  if (item == 0) throw std::runtime_error(path + ": unsupported dtype " + a.descr);
  size_t count = 1;
  for (int64_t d : a.shape) count *= static_cast<size_t>(d);
  a.data.resize(count * item);
  f.read(a.data.data(), static_cast<std::streamsize>(a.data.size()));
  if (!f) throw std::runtime_error(path + ": truncated .npy data");
  return a;
}

void WriteNpy(const std::string& path, const NpyArray& a) {
  std::string shape = "(";
  for (int64_t d : a.shape) shape += std::to_string(d) + ",";
  if (a.shape.size() > 1) shape.pop_back();
  shape += ")";
  std::string header = "{'descr': '" + a.descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";  // data starts 64-byte aligned
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot write " + path);
  f.write(kMagic, 6);
  const char version[2] = {1, 0};
  f.write(version, 2);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  f.write(reinterpret_cast<const char*>(len), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(a.data.data(), static_cast<std::streamsize>(a.data.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace arm_host
