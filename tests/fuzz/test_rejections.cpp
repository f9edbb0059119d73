// test_rejections.cpp: rows of docs/bad-inputs.md that no other test covered.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "fam/fam.hpp"

TEST_SUITE("rejections") {
  TEST_CASE("init with caller storage refuses a null or short or misaligned block") {
    fam::dynamic_config c(4, 3, 1, 2);
    c.set_heads(2, 1);
    using state_t = fam::layer_state<fam::dynamic_config>;
    const std::size_t n = state_t::storage_bytes(c);
    REQUIRE(n > 0);
    std::vector<unsigned char> raw(n + 2 * state_t::alignment, 0xab);
    auto* base = raw.data();
    unsigned char* aligned =
        base + (state_t::alignment - reinterpret_cast<std::uintptr_t>(base) % state_t::alignment) %
                   state_t::alignment;
    state_t st;
    CHECK(st.init(c, nullptr, n) == fam::status::null_pointer);
    CHECK(st.init(c, aligned, n - 1) == fam::status::buffer_too_small);
    CHECK(st.init(c, aligned + 1, n) == fam::status::invalid_layout);
    CHECK_FALSE(st.initialized());
    for (unsigned char b : raw) CHECK(b == 0xab);  // nothing written
    // a bad configuration is reported first, whatever the storage
    fam::dynamic_config bad = c;
    bad.kv_heads = 3;
    CHECK(st.init(bad, nullptr, 0) == fam::status::invalid_argument);
    // and the right block works
    CHECK(st.init(c, aligned, n) == fam::status::ok);
    CHECK(st.initialized());
  }
}
