// test_index_width.cpp: a configuration or a view whose offsets would overflow an index type in
// use (int64 element offsets, size_t byte counts) is refused before any memory is touched, and
// without allocating. Nothing here allocates what it describes: huge views point at a few real
// floats (AddressSanitizer would see any access beyond them), and this binary's operator new
// refuses any block above 1 GiB, so a configuration that passes validate() but cannot be
// allocated reports out_of_memory instead of taking the machine's memory.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "fam/fam.hpp"
#include "npy.hpp"

// ---- a counting allocator that refuses huge blocks ---------------------------------------------

namespace {

std::atomic<std::int64_t> g_allocations{0};
constexpr std::size_t kRefuseAbove = std::size_t(1) << 30;

void* counted(std::size_t n, std::size_t align) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n > kRefuseAbove) return nullptr;
  if (align < alignof(std::max_align_t)) align = alignof(std::max_align_t);
  void* raw = std::malloc(n + align + sizeof(void*));
  if (raw == nullptr) return nullptr;
  const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(raw) + sizeof(void*);
  const std::uintptr_t at = (start + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
  void* p = reinterpret_cast<void*>(at);
  std::memcpy(static_cast<char*>(p) - sizeof(void*), &raw, sizeof(void*));
  return p;
}
void release(void* p) noexcept {
  if (p == nullptr) return;
  void* raw;
  std::memcpy(&raw, static_cast<char*>(p) - sizeof(void*), sizeof(void*));
  std::free(raw);
}
void* or_throw(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return or_throw(counted(n, 0)); }
void* operator new[](std::size_t n) { return or_throw(counted(n, 0)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return or_throw(counted(n, static_cast<std::size_t>(a)));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return or_throw(counted(n, static_cast<std::size_t>(a)));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }

namespace {

using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;
using cview = fam::tensor_view<const float>;
using mview = fam::tensor_view<float>;
constexpr index_t kMax = std::numeric_limits<index_t>::max();
__extension__ typedef __int128 wide;

cfg_t make(index_t D, index_t B, index_t M, index_t F, index_t H, index_t Hkv, index_t phi = 0) {
  cfg_t c(D, B, M, F);
  c.set_heads(H, Hkv);
  c.phi_dim = phi;
  return c;
}

/// The elements of the ring (K or V, all kv heads) and the FAM projections, exactly.
wide ring_elements(const cfg_t& c) {
  return wide(c.kv_heads) * (wide(c.mem_segments()) + 1) * c.block_size() * c.head_dim();
}

/// validate(), supports(), storage_bytes() and init() of one configuration, allocation counted.
struct probe {
  status validated;
  bool supported;
  std::size_t bytes_f32, bytes_f16;
  status init;
  std::int64_t allocations;
};
probe run(const cfg_t& c) {
  probe p{};
  const std::int64_t before = g_allocations.load();
  p.validated = c.validate();
  p.supported = fam::supports(c).ok();
  p.bytes_f32 = fam::layer_state<cfg_t>::storage_bytes(c);
  p.bytes_f16 = fam::layer_state<cfg_t, fam::fp16>::storage_bytes(c);
  {
    fam::layer_state<cfg_t> st;
    p.init = st.init(c);
  }
  p.allocations = g_allocations.load() - before;
  return p;
}

/// Configurations at the edge of validate()'s range for block size B.
void check_edge_of_range(index_t B) {
  const index_t limit = kMax / 64;
  const index_t rows = cfg_t::tiled_rows(B);  // K is stored in whole tiles of 32 keys
  for (index_t D : {index_t(1), index_t(7), index_t(128)}) {
    const index_t M = limit / (rows * D) - 1;  // (M+1) rows D <= limit
    const cfg_t c = make(D, B, M, 0, 1, 1);
    CAPTURE(B);
    CAPTURE(D);
    const probe p = run(c);
    REQUIRE(p.validated == status::ok);
    CHECK(wide(p.bytes_f32) >= 2 * ring_elements(c) * 4);
    CHECK(wide(p.bytes_f16) >= 2 * ring_elements(c) * 2);
    CHECK(p.init == status::out_of_memory);
    CHECK(p.allocations <= 1);
    const probe past = run(make(D, B, M + 1, 0, 1, 1));
    CHECK(past.validated == status::too_large);
    CHECK(past.bytes_f32 == 0);
  }
}

}  // namespace

TEST_SUITE("index_width") {
  TEST_CASE("configurations past the index range are too_large and allocate nothing") {
    // products of the ring [Hkv, (M+1) B, D], the FAM [H, F, D] and Φ [F, phi_dim] beyond what
    // 64-bit byte offsets address; each alone, with the other sizes at 1
    const index_t p31 = index_t(1) << 31, p40 = index_t(1) << 40;
    const cfg_t bad[] = {
        make(p31, p31, 0, 0, 1, 1),
        make(1, p40, p40, 0, 1, 1),
        make(p40, 1, 0, 0, p40, 1),
        make(1, 1, kMax - 1, 0, 1, 1),
        make(1, 1, 0, kMax, 1, 1),
        make(p31, 1, 0, p31, 4, 4),
        make(1, 1, 0, p40, 1, 1, p40),
        make(kMax, 1, 0, 0, 1, 1),
        make(1, kMax, 0, 0, 1, 1),
        make(1, 1, 0, 0, kMax, 1),
        make(3, 5, (kMax / 64) / 15, 0, 1, 1),  // (M+1) B D just past the limit
    };
    for (const cfg_t& c : bad) {
      CAPTURE(c.head_dim());
      CAPTURE(c.block_size());
      CAPTURE(c.mem_segments());
      CAPTURE(c.fam_len());
      CAPTURE(c.heads);
      CAPTURE(c.phi_dim);
      const probe p = run(c);
      CHECK(p.validated == status::too_large);
      CHECK_FALSE(p.supported);
      CHECK(p.bytes_f32 == 0);
      CHECK(p.bytes_f16 == 0);
      CHECK(p.init == status::too_large);
      CHECK(p.allocations == 0);
    }
  }

  TEST_CASE("the largest valid configurations have byte counts that do not wrap") {
    // At the edge of validate()'s range the state's byte count must still be exact: it holds at
    // least the ring's K and V. A wrapped size_t would allocate a small block and write past it.
    // init() then fails cleanly: out_of_memory (this binary refuses blocks above 1 GiB).
    for (index_t B : {index_t(1), index_t(2), index_t(31), index_t(32), index_t(33), index_t(1000),
                      index_t(1) << 20})
      check_edge_of_range(B);
  }

  TEST_CASE("views whose offsets overflow int64 are too_large before any access") {
    // four real floats; the views claim far more
    float cell[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const cfg_t c = make(1, 2, 1, 0, 1, 1);
    const index_t rows = index_t(1) << 40, stride = index_t(1) << 30;
    const cview huge{cell, rows, 1, 1, stride, 1};
    const mview out{cell, rows, 1, 1, stride, 1};
    std::int64_t before = g_allocations.load();
    const status a = fam::attention(c, fam::mask_spec::full(), huge, huge, huge, out);
    const status b = fam::attention(c, fam::mask_spec::bswa(2, 1), huge, huge, huge, out);
    std::int64_t allocations = g_allocations.load() - before;
    CHECK(a == status::too_large);
    CHECK(b == status::too_large);
    CHECK(allocations == 0);
    // a head stride that overflows with many heads
    const cfg_t ch = make(1, 2, 1, 0, index_t(1) << 20, 1);
    const cview heads{cell, 1, index_t(1) << 20, 1, 1, index_t(1) << 50};
    const cview one{cell, 1, 1, 1, 1, 1};
    const mview oh{cell, 1, index_t(1) << 20, 1, 1, index_t(1) << 50};
    CHECK(fam::attention(ch, fam::mask_spec::full(), heads, one, one, oh) == status::too_large);
    // the streaming calls refuse them the same way, state untouched
    fam::layer_state<cfg_t> st;
    REQUIRE(st.init(c) == status::ok);
    index_t consumed = -1;
    before = g_allocations.load();
    const status s = fam::attend(st, huge, huge, huge, out, {}, &consumed);
    allocations = g_allocations.load() - before;
    CHECK(s == status::too_large);
    CHECK(consumed == -1);
    CHECK(st.tokens() == 0);
    CHECK(allocations == 0);
    // fam_attention's FAM and memory views
    const cfg_t cf = make(1, 2, 1, 2, 1, 1);
    fam::fam_block_args<> args;
    args.qf = args.kf = args.vf = cview{cell, 2, 1, 1, kMax / 2, 1};
    args.uf = mview{cell, 2, 1, 1, kMax / 2, 1};
    CHECK(fam::fam_attention(cf, args) == status::too_large);
    // and the cell is as it was
    CHECK(cell[0] == 1.0f);
    CHECK(cell[3] == 4.0f);
  }

  TEST_CASE("a blob's token count at the limit restores and its positions stay in range") {
    cfg_t c = make(2, 4, 1, 0, 1, 1);
    c.position_offset = fam::max_position_offset;  // the largest positions a state can have
    fam::layer_state<cfg_t> st;
    REQUIRE(st.init(c) == status::ok);
    std::vector<unsigned char> blob(fam::serialized_size(st));
    REQUIRE(fam::save_state(st, blob.data(), blob.size()) == status::ok);
    // tokens at offset 96 (fam/state_io.hpp's layout), checksum recomputed
    auto with_tokens = [&](std::int64_t n) {
      std::vector<unsigned char> b = blob;
      std::memcpy(b.data() + 96, &n, 8);
      std::uint64_t h = 14695981039346656037ull;
      for (std::size_t i = 0; i + 8 < b.size(); ++i) h = (h ^ b[i]) * 1099511628211ull;
      std::memcpy(b.data() + b.size() - 8, &h, 8);
      return b;
    };
    static_assert(fam::max_tokens == kMax / 4, "the blob limit below");
    const std::int64_t top = kMax / 4 - kMax / 4 % 4;  // a block boundary near the limit
    std::vector<unsigned char> ok = with_tokens(top), past = with_tokens(kMax / 4 + 1);
    CHECK(fam::restore_state(st, past.data(), past.size()) == status::corrupt_state);
    REQUIRE(fam::restore_state(st, ok.data(), ok.size()) == status::ok);
    CHECK(st.tokens() == top);
    CHECK(st.token_position(0) == top + fam::max_position_offset);
    float x[8] = {0.5f, -0.5f, 0.25f, 1.0f, 0.5f, 0.5f, -1.0f, 2.0f}, out[8];
    const auto v = fam::make_view<const float>(x, 4, 1, 2);
    // room for 3 more tokens: a chunk of 4 would pass max_tokens, refused with nothing written
    std::fill(std::begin(out), std::end(out), -7.0f);
    CHECK(fam::attend(st, v, v, v, fam::make_view(out, 4, 1, 2)) == status::too_large);
    CHECK(st.tokens() == top);
    for (float o : out) CHECK(o == -7.0f);
    REQUIRE(fam::attend(st, v.rows_from(0, 3), v.rows_from(0, 3), v.rows_from(0, 3),
                        fam::make_view(out, 3, 1, 2)) == status::ok);
    CHECK(st.tokens() == fam::max_tokens);
    CHECK(st.token_position(0) == fam::max_tokens + fam::max_position_offset);
    for (int i = 0; i < 6; ++i) CHECK(out[i] == out[i]);
    CHECK(fam::attend(st, v.rows_from(0, 1), v.rows_from(0, 1), v.rows_from(0, 1),
                      fam::make_view(out, 1, 1, 2)) == status::too_large);
    CHECK(st.tokens() == fam::max_tokens);
  }

  TEST_CASE("the npy reader refuses shapes whose element count overflows") {
    char path[] = "/tmp/fam_index_width_XXXXXX";
    const int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    auto write_header = [&](const std::string& shape) {
      std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
      while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
      dict += '\n';
      std::string b = "\x93NUMPY";
      b += char(1);
      b += char(0);
      b += char(dict.size() & 0xff);
      b += char(dict.size() >> 8);
      b += dict;
      b += std::string(16, '\0');
      std::FILE* f = std::fopen(path, "wb");
      std::fwrite(b.data(), 1, b.size(), f);
      std::fclose(f);
    };
    npy::array a;
    std::string err;
    for (const char* shape : {"(4294967296, 4294967296, 8)", "(99999999999999999999, 4, 8)",
                              "(9223372036854775807,)", "(3037000500, 3037000500)"}) {
      CAPTURE(shape);
      write_header(shape);
      CHECK_FALSE(npy::read(path, a, err));
      CHECK(err.find("too large") != std::string::npos);
    }
    std::remove(path);
  }
}
