// A small, strict reader and writer of NumPy .npy files (format versions 1.0, 2.0 and 3.0) for
// float arrays: '<f4' or '<f8' (converted to float32), C order, any rank. Everything that does
// not describe exactly such an array is rejected with a one-line message: bad magic, unknown
// version, a header that is not the dict NumPy writes, missing/extra/duplicate keys, a shape that
// is not a tuple of non-negative integers, an unsupported dtype, Fortran order, and a data part
// that is shorter or longer than the shape says.
//
// The format (numpy/lib/format.py): "\x93NUMPY", major, minor, the header length (2 bytes
// little-endian for 1.0, 4 bytes for 2.0/3.0), then the header, a Python dict literal such as
// "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" padded with spaces and ended by
// '\n' (latin-1 for 1.0/2.0, UTF-8 for 3.0), then the raw data.
#ifndef FAM_EXAMPLES_NPY_HPP_
#define FAM_EXAMPLES_NPY_HPP_

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

namespace npy {

/// An array read from a .npy file, converted to float32, C order.
struct array {
  std::vector<std::int64_t> shape;
  std::vector<float> data;
  std::string descr;  ///< the dtype as stored: "<f4" or "<f8"

  std::int64_t dim(std::size_t i) const { return shape[i]; }
  /// "(2, 3, 4)" as NumPy prints a shape.
  std::string shape_text() const {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (i > 0) s += ", ";
      s += std::to_string(shape[i]);
    }
    if (shape.size() == 1) s += ",";
    return s + ")";
  }
};

namespace detail {

/// A value of the header's Python literal: string, bool, None, integer or tuple/list.
struct value {
  enum kind_t { string, boolean, none, integer, tuple, list } kind = none;
  std::string text;          // string
  bool flag = false;         // boolean
  std::int64_t number = 0;   // integer
  bool overflow = false;     // integer too large for int64
  std::vector<value> items;  // tuple, list
};

/// Recursive-descent parser of the literals NumPy writes in a header.
class header_parser {
 public:
  explicit header_parser(const std::string& s) : s_(s) {}

  /// Parses "{key: value, ...}" with string keys; false and `err` on any syntax error.
  bool parse_dict(std::vector<std::pair<std::string, value>>& out, std::string& err) {
    skip_ws();
    if (!eat('{')) return fail("header is not a dict", err);
    for (;;) {
      skip_ws();
      if (eat('}')) break;
      value key;
      if (!parse_value(key, err, 0)) return false;
      if (key.kind != value::string) return fail("header dict key is not a string", err);
      skip_ws();
      if (!eat(':')) return fail("expected ':' in header dict", err);
      value v;
      if (!parse_value(v, err, 0)) return false;
      out.emplace_back(key.text, std::move(v));
      skip_ws();
      if (eat(',')) continue;
      if (eat('}')) break;
      return fail("expected ',' or '}' in header dict", err);
    }
    skip_ws();
    if (pos_ != s_.size()) return fail("unexpected text after the header dict", err);
    return true;
  }

 private:
  static constexpr int kMaxDepth = 8;

  static bool fail(const char* what, std::string& err) {
    err = what;
    return false;
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool word(const char* w) {
    const std::size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) != 0) return false;
    // the keyword must end here (no identifier character follows)
    if (pos_ + n < s_.size()) {
      const char c = s_[pos_ + n];
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
        return false;
    }
    pos_ += n;
    return true;
  }

  bool parse_value(value& v, std::string& err, int depth) {
    if (depth > kMaxDepth) return fail("header nests too deeply", err);
    skip_ws();
    if (pos_ >= s_.size()) return fail("header ends inside the dict", err);
    const char c = s_[pos_];
    if (c == '\'' || c == '"') return parse_string(v, err);
    if (c == '(' || c == '[') return parse_sequence(v, err, depth);
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return parse_integer(v, err);
    if (word("True")) {
      v.kind = value::boolean;
      v.flag = true;
      return true;
    }
    if (word("False")) {
      v.kind = value::boolean;
      v.flag = false;
      return true;
    }
    if (word("None")) {
      v.kind = value::none;
      return true;
    }
    return fail("unexpected token in header", err);
  }

  bool parse_string(value& v, std::string& err) {
    const char quote = s_[pos_++];
    v.kind = value::string;
    for (;;) {
      if (pos_ >= s_.size() || s_[pos_] == '\n') return fail("unterminated string in header", err);
      const char c = s_[pos_++];
      if (c == quote) return true;
      if (c == '\\') return fail("escape sequences in header strings are not supported", err);
      v.text += c;
    }
  }

  bool parse_integer(value& v, std::string& err) {
    v.kind = value::integer;
    bool negative = false;
    if (s_[pos_] == '-' || s_[pos_] == '+') negative = s_[pos_++] == '-';
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9')
      return fail("malformed integer in header", err);
    std::int64_t n = 0;
    const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const int d = s_[pos_++] - '0';
      if (n > (kMax - d) / 10) {
        v.overflow = true;
      } else {
        n = n * 10 + d;
      }
    }
    if (pos_ < s_.size()) {  // 1.5, 3L, 1_000, 0x10: not a plain decimal integer
      const char c = s_[pos_];
      if (c == '.' || c == '_' || c == 'e' || c == 'E' || c == 'x' || c == 'X' || c == 'L' ||
          c == 'l' || c == 'j' || c == 'J')
        return fail("malformed integer in header", err);
    }
    v.number = negative ? -n : n;
    return true;
  }

  bool parse_sequence(value& v, std::string& err, int depth) {
    const char open = s_[pos_++];
    const char close = open == '(' ? ')' : ']';
    v.kind = open == '(' ? value::tuple : value::list;
    bool comma = false;
    for (;;) {
      skip_ws();
      if (eat(close)) break;
      value item;
      if (!parse_value(item, err, depth + 1)) return false;
      v.items.push_back(std::move(item));
      skip_ws();
      if (eat(',')) {
        comma = true;
        continue;
      }
      if (eat(close)) break;
      return fail("expected ',' or a closing bracket in header", err);
    }
    // "(5)" is the integer 5 in Python, not a tuple
    if (v.kind == value::tuple && v.items.size() == 1 && !comma) {
      value inner = std::move(v.items[0]);
      v = std::move(inner);
    }
    return true;
  }

  const std::string& s_;
  std::size_t pos_ = 0;
};

inline std::uint32_t load_u32le(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline std::uint64_t load_u64le(const unsigned char* p) {
  return static_cast<std::uint64_t>(load_u32le(p)) |
         (static_cast<std::uint64_t>(load_u32le(p + 4)) << 32);
}
inline void store_u32le(unsigned char* p, std::uint32_t u) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(u >> (8 * i));
}

/// Closes a FILE* on scope exit.
struct file_closer {
  std::FILE* f;
  ~file_closer() {
    if (f != nullptr) std::fclose(f);
  }
};

}  // namespace detail

/// Reads a .npy file of '<f4' or '<f8' values in C order into `out` (float64 converted to
/// float32; a finite value outside the float32 range is an error).
/// @return true, or false with `err` set to a one-line reason (which does not repeat the path).
inline bool read(const std::string& path, array& out, std::string& err) {
  out = array{};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    err = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  detail::file_closer closer{f};
  struct stat st {};
  if (fstat(fileno(f), &st) != 0) {
    err = std::string("cannot stat: ") + std::strerror(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    err = "is a directory";
    return false;
  }
  const bool regular = S_ISREG(st.st_mode);

  // magic, version, header length
  unsigned char pre[12];
  auto read_exact = [f](void* dst, std::size_t n) { return std::fread(dst, 1, n, f) == n; };
  if (!read_exact(pre, 8)) {
    err = std::ferror(f) ? std::string("read error: ") + std::strerror(errno)
                         : "not a .npy file (too short)";
    return false;
  }
  if (std::memcmp(pre, "\x93NUMPY", 6) != 0) {
    err = "not a .npy file (bad magic)";
    return false;
  }
  const int major = pre[6], minor = pre[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    err = "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
          " (1.0, 2.0 and 3.0 are read)";
    return false;
  }
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (!read_exact(pre + 8, len_bytes)) {
    err = "truncated .npy header";
    return false;
  }
  const std::uint64_t header_len =
      major == 1 ? static_cast<std::uint64_t>(pre[8] | (pre[9] << 8)) : detail::load_u32le(pre + 8);
  constexpr std::uint64_t kMaxHeader = 1u << 20;
  if (header_len > kMaxHeader) {
    err = "header of " + std::to_string(header_len) + " bytes is too long";
    return false;
  }
  const std::uint64_t data_offset = 8 + len_bytes + header_len;
  if (regular && static_cast<std::uint64_t>(st.st_size) < data_offset) {
    err = "truncated .npy header";
    return false;
  }
  std::string header(static_cast<std::size_t>(header_len), '\0');
  if (header_len > 0 && !read_exact(&header[0], header.size())) {
    err = "truncated .npy header";
    return false;
  }
  for (char c : header)
    if (c == '\0') {
      err = "NUL byte in .npy header";
      return false;
    }

  // the dict
  std::vector<std::pair<std::string, detail::value>> items;
  std::string perr;
  if (!detail::header_parser(header).parse_dict(items, perr)) {
    err = "malformed .npy header: " + perr;
    return false;
  }
  const detail::value* descr = nullptr;
  const detail::value* fortran = nullptr;
  const detail::value* shape = nullptr;
  for (const auto& kv : items) {
    const detail::value** slot = kv.first == "descr"           ? &descr
                                 : kv.first == "fortran_order" ? &fortran
                                 : kv.first == "shape"         ? &shape
                                                               : nullptr;
    if (slot == nullptr) {
      err = "malformed .npy header: unexpected key '" + kv.first + "'";
      return false;
    }
    if (*slot != nullptr) {
      err = "malformed .npy header: duplicate key '" + kv.first + "'";
      return false;
    }
    *slot = &kv.second;
  }
  for (auto [name, v] : {std::pair<const char*, const detail::value*>{"descr", descr},
                         {"fortran_order", fortran},
                         {"shape", shape}})
    if (v == nullptr) {
      err = std::string("malformed .npy header: no '") + name + "' key";
      return false;
    }
  if (descr->kind != detail::value::string) {
    err = "unsupported dtype (structured or non-string descr); need '<f4' or '<f8'";
    return false;
  }
  std::size_t item = 0;
  if (descr->text == "<f4") {
    item = 4;
  } else if (descr->text == "<f8") {
    item = 8;
  } else if (descr->text == ">f4" || descr->text == ">f8") {
    err = "big-endian dtype '" + descr->text + "' is not supported; need '<f4' or '<f8'";
    return false;
  } else {
    err = "unsupported dtype '" + descr->text + "'; need '<f4' (float32) or '<f8' (float64)";
    return false;
  }
  if (fortran->kind != detail::value::boolean) {
    err = "malformed .npy header: fortran_order is not True or False";
    return false;
  }
  if (fortran->flag) {
    err = "fortran_order True is not supported; write the array in C order";
    return false;
  }
  if (shape->kind != detail::value::tuple) {
    err = "malformed .npy header: shape is not a tuple";
    return false;
  }
  std::uint64_t count = 1;
  constexpr std::uint64_t kMaxCount =
      static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / 8;
  for (const detail::value& d : shape->items) {
    if (d.kind != detail::value::integer) {
      err = "malformed .npy header: shape holds a non-integer";
      return false;
    }
    if (d.overflow || d.number < 0) {
      err = "malformed .npy header: shape " +
            std::string(d.number < 0 ? "holds a negative size" : "size too large");
      return false;
    }
    out.shape.push_back(d.number);
  }
  for (std::int64_t d : out.shape) {
    const std::uint64_t u = static_cast<std::uint64_t>(d);
    if (u != 0 && count > kMaxCount / u) {
      count = kMaxCount + 1;  // too large; zero sizes elsewhere are handled below
    } else {
      count *= u;
    }
  }
  bool empty = false;
  for (std::int64_t d : out.shape) empty = empty || d == 0;
  if (empty) count = 0;
  if (count > kMaxCount) {
    err = "shape " + out.shape_text() + " is too large";
    return false;
  }
  const std::uint64_t data_bytes = count * item;
  if (regular) {
    const std::uint64_t have = static_cast<std::uint64_t>(st.st_size) - data_offset;
    if (have != data_bytes) {
      err = std::string(have < data_bytes ? "truncated data" : "trailing bytes after the data") +
            ": shape " + out.shape_text() + " of '" + descr->text + "' needs " +
            std::to_string(data_bytes) + " bytes, the file has " + std::to_string(have);
      return false;
    }
  }
  out.descr = descr->text;

  // the data, in chunks (a non-regular file is read until the count is reached)
  try {
    if (regular) out.data.reserve(static_cast<std::size_t>(count));
    constexpr std::size_t kChunk = 1 << 16;  // elements
    std::vector<unsigned char> buf(kChunk * item);
    std::uint64_t done = 0;
    while (done < count) {
      const std::size_t n = static_cast<std::size_t>(count - done < kChunk ? count - done : kChunk);
      if (!read_exact(buf.data(), n * item)) {
        err = std::ferror(f) ? std::string("read error: ") + std::strerror(errno)
                             : "truncated data: the file ends before " +
                                   std::to_string(data_bytes) + " data bytes";
        return false;
      }
      for (std::size_t i = 0; i < n; ++i) {
        const unsigned char* p = buf.data() + i * item;
        float x;
        if (item == 4) {
          const std::uint32_t u = detail::load_u32le(p);
          std::memcpy(&x, &u, 4);
        } else {
          const std::uint64_t u = detail::load_u64le(p);
          double d;
          std::memcpy(&d, &u, 8);
          if (std::isfinite(d) &&
              std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max())) {
            char text[32];
            std::snprintf(text, sizeof text, "%.6g", d);
            err = std::string("float64 value ") + text + " at flat index " +
                  std::to_string(done + i) + " does not fit in float32";
            return false;
          }
          x = static_cast<float>(d);
        }
        out.data.push_back(x);
      }
      done += n;
    }
  } catch (const std::bad_alloc&) {
    err = "out of memory for shape " + out.shape_text();
    return false;
  }
  unsigned char extra;
  if (std::fread(&extra, 1, 1, f) != 0) {
    err = "trailing bytes after the data";
    return false;
  }
  return true;
}

/// Writes a '<f4' C-order .npy (format 1.0) of `shape` to the open stream `f`.
/// @return true, or false with `err` set.
inline bool write(std::FILE* f, const std::vector<std::int64_t>& shape, const float* data,
                  std::string& err) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  std::uint64_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) dict += ", ";
    dict += std::to_string(shape[i]);
    count *= static_cast<std::uint64_t>(shape[i]);
  }
  if (shape.size() == 1) dict += ",";
  dict += "), }";
  // pad so that the data starts at a multiple of 64 bytes; the header ends with '\n'
  const std::size_t prefix = 10;
  std::size_t total = prefix + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  if (dict.size() > 65535) {
    err = "header too long for format 1.0";
    return false;
  }
  unsigned char pre[10] = {0x93,
                           'N',
                           'U',
                           'M',
                           'P',
                           'Y',
                           1,
                           0,
                           static_cast<unsigned char>(dict.size() & 0xff),
                           static_cast<unsigned char>(dict.size() >> 8)};
  bool ok = std::fwrite(pre, 1, sizeof pre, f) == sizeof pre &&
            std::fwrite(dict.data(), 1, dict.size(), f) == dict.size();
  constexpr std::size_t kChunk = 1 << 16;
  std::vector<unsigned char> buf(4 * kChunk);
  for (std::uint64_t done = 0; ok && done < count;) {
    const std::size_t n = static_cast<std::size_t>(count - done < kChunk ? count - done : kChunk);
    for (std::size_t i = 0; i < n; ++i) {
      std::uint32_t u;
      std::memcpy(&u, data + done + i, 4);
      detail::store_u32le(buf.data() + 4 * i, u);
    }
    ok = std::fwrite(buf.data(), 1, 4 * n, f) == 4 * n;
    done += n;
  }
  if (!ok) err = std::string("write error: ") + std::strerror(errno);
  return ok;
}

}  // namespace npy

#endif  // FAM_EXAMPLES_NPY_HPP_
