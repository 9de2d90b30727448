// .npy read / write (format 1.0 - 3.0, little-endian, C order): numpy's own file format.
#include <cstring>
#include <fstream>
#include <map>

#include "vcc/runtime.hpp"

namespace vcc {

namespace {

const std::map<std::string, std::pair<std::string, size_t>>& descrs() {
  static const std::map<std::string, std::pair<std::string, size_t>> m = {
      {"<f4", {"float32", 4}}, {"<f8", {"float64", 8}}, {"<f2", {"float16", 2}}, {"|i1", {"int8", 1}},
      {"|u1", {"uint8", 1}},   {"<i4", {"int32", 4}},   {"<i8", {"int64", 8}},   {"|b1", {"bool", 1}}};
  return m;
}

// the value of 'key' in the header dict, as its raw text
std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) throw Error(path + ": not a .npy file (header has no '" + key + "')");
  size_t colon = header.find(':', k);
  size_t start = header.find_first_not_of(' ', colon + 1);
  if (header[start] == '(') return header.substr(start, header.find(')', start) - start + 1);
  size_t end = header.find_first_of(",}", start);
  return header.substr(start, end - start);
}

}  // namespace

Tensor read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open the .npy tensor");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file (bad magic)");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(hlen, '\0');
  if (!f || hlen > (1u << 20) || !f.read(header.data(), hlen)) throw Error(path + ": not a .npy file (truncated header)");
  std::string descr = header_value(header, "descr", path);
  descr = descr.substr(1, descr.size() - 2);  // strip quotes
  auto it = descrs().find(descr);
  if (it == descrs().end()) throw Error(path + ": unsupported .npy dtype " + descr);
  if (header_value(header, "fortran_order", path) != "False") throw Error(path + ": Fortran-order .npy is not supported");
  Tensor t;
  t.dtype = it->second.first;
  std::string shape = header_value(header, "shape", path);
  for (size_t i = 1; i < shape.size();) {
    size_t j = shape.find_first_of(",)", i);
    std::string num = shape.substr(i, j - i);
    if (num.find_first_not_of(' ') != std::string::npos) t.shape.push_back(std::stoll(num));
    i = j + 1;
  }
  size_t n = static_cast<size_t>(t.numel()) * it->second.second;
  t.bytes.resize(n);
  if (!f.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(n)))
    throw Error(path + ": truncated .npy data (expected " + std::to_string(n) + " bytes)");
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  std::string descr;
  for (const auto& [d, v] : descrs())
    if (v.first == t.dtype) descr = d;
  if (descr.empty()) throw Error("cannot write dtype " + t.dtype + " as .npy");
  std::string pretty = "(";
  for (size_t i = 0; i < t.shape.size(); ++i) pretty += std::to_string(t.shape[i]) + (i + 1 < t.shape.size() ? ", " : (t.shape.size() == 1 ? "," : ""));
  pretty += ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + pretty + ", }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error(path + ": cannot write");
    uint16_t hlen = static_cast<uint16_t>(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    char b[2] = {static_cast<char>(hlen & 0xff), static_cast<char>(hlen >> 8)};
    f.write(b, 2);
    f << header;
    f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    if (!f) throw Error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot write");
}

}  // namespace vcc
