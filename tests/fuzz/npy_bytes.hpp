// The bytes of a .npy file (format 1.0, 2.0 or 3.0, '<f4' or '<f8', C order) for tests that
// write their own inputs to fam-run without NumPy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fuzz {

inline std::string npy_bytes(const std::vector<std::int64_t>& shape, const std::vector<float>& data,
                             bool f8, int version) {
  std::string dict =
      std::string("{'descr': '") + (f8 ? "<f8" : "<f4") + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
  dict += shape.size() == 1 ? ",), }" : "), }";
  const std::size_t pre = version == 1 ? 10 : 12;
  while ((pre + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string b = "\x93NUMPY";
  b += char(version);
  b += char(0);
  const std::uint32_t n = static_cast<std::uint32_t>(dict.size());
  b += char(n & 0xff);
  b += char((n >> 8) & 0xff);
  if (version != 1) {
    b += char((n >> 16) & 0xff);
    b += char((n >> 24) & 0xff);
  }
  b += dict;
  for (float x : data) {
    if (f8) {
      const double d = x;
      b.append(reinterpret_cast<const char*>(&d), 8);
    } else {
      b.append(reinterpret_cast<const char*>(&x), 4);
    }
  }
  return b;
}

/// A .npy file with the header dict text `dict` (padded to 64 bytes and ended by '\n') and the
/// raw data bytes: for headers NumPy would never write.
inline std::string npy_raw(std::string dict, const std::string& data, int major = 1, int minor = 0,
                           const std::string& magic = "\x93NUMPY") {
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string b = magic;
  b += char(major);
  b += char(minor);
  b += char(dict.size() & 0xff);
  b += char((dict.size() >> 8) & 0xff);
  return b + dict + data;
}

}  // namespace fuzz
