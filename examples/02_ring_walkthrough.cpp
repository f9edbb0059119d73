// 02 ring walkthrough: where BSWA's streaming state keeps each token.
//
// A layer_state holds a ring of M+1 slots of B rows: the last M complete blocks (the memory)
// plus the block being filled. Block b lives in slot b % (M+1), so writing block b overwrites
// block b-M-1, which no token can see any more. Nothing is ever moved: which rows are live
// follows from the token count alone (fam::ring_geometry). We stream tokens in ragged chunks
// and print, after each chunk, what every slot holds.
//
// Each token's value is its own position n and every key is 0, so every visible key gets the
// same attention weight and a token's output is the mean position of the keys it sees. That
// lets us check the ring from the outside: out[n] = (lo + n) / 2 with [lo, n] = visible_tokens.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "fam/fam.hpp"

namespace {

using fam::index_t;
constexpr index_t kD = 1;                             // one number per token: its position
constexpr index_t kB = 4;                             // B tokens per block
constexpr index_t kM = 2;                             // M memory blocks
using config = fam::attention_config<kD, kB, kM, 0>;  // F = 0: plain BSWA, no FAM protocol

/// Prints slot -> block -> positions for a state that has seen `n` tokens. Live rows show the
/// position the ring holds there; rows not written yet in this round show the stale position
/// of the evicted block in brackets (still in memory, never read), or '-' if never written.
/// Returns false if a live row does not hold the position ring_geometry says.
bool print_ring(const fam::layer_state<config>& st) {
  const fam::ring_geometry ring = st.ring().geometry;
  const index_t n = st.tokens(), t = st.current_block(), offset = st.block_offset();
  const index_t first = ring.first_memory_block(n);
  std::printf("after %2lld tokens: next token %lld is in block %lld at offset %lld; memory = ",
              (long long)n, (long long)n, (long long)t, (long long)offset);
  if (first < t)
    std::printf("blocks %lld..%lld\n", (long long)first, (long long)(t - 1));
  else
    std::printf("none\n");
  bool ok = true;
  for (index_t slot = 0; slot < ring.blocks(); ++slot) {
    // the newest block b <= t that maps to this slot (negative: none yet)
    const index_t k = ring.blocks(), b = t - ((t - slot) % k + k) % k;
    const char* role = b < 0 ? "empty" : b == t ? "filling" : "memory";
    std::printf("  slot %lld | %-7s | block %2s | ", (long long)slot, role,
                b < 0 ? "-" : std::to_string(b).c_str());
    for (index_t i = 0; i < kB; ++i) {
      const index_t row = slot * kB + i;
      const float held = st.ring().v_row(0, row)[0];  // [D] = the position stored there
      const index_t pos = b * kB + i;                 // what ring_geometry says lives here
      const bool live = b >= 0 && pos < n;
      if (live) {
        ok = ok && ring.row_of_token(pos) == row && held == float(pos);
        std::printf("%4lld ", (long long)pos);
      } else if (pos - ring.blocks() * kB >= 0) {
        std::printf("[%2.0f] ", double(held));  // evicted block's row, waiting to be reused
      } else {
        std::printf("   - ");
      }
    }
    std::printf("\n");
  }
  return ok;
}

}  // namespace

int main() {
  config cfg;
  cfg.set_scale(1.0);
  fam::layer_state<config> st;
  if (st.init(cfg) != fam::status::ok) return 1;
  std::printf("BSWA ring: B = %lld, M = %lld -> %lld slots, %lld rows whatever the length\n\n",
              (long long)kB, (long long)kM, (long long)st.ring().geometry.blocks(),
              (long long)st.ring().geometry.rows());

  // The whole sequence: q = k = 0, v = position. out gets the streamed outputs.
  const std::vector<index_t> chunks = {3, 6, 1, 5, 7};  // ragged on purpose: 22 tokens
  index_t L = 0;
  for (index_t c : chunks) L += c;
  const std::size_t size = std::size_t(L * kD);
  std::vector<float> zeros(size, 0.0f), pos(size), out(size);
  for (index_t n = 0; n < L; ++n) pos[std::size_t(n)] = float(n);
  const auto q = fam::make_view<const float>(zeros.data(), L, 1, kD);  // [L, H, D]
  const auto v = fam::make_view<const float>(pos.data(), L, 1, kD);    // [L, Hkv, D]
  const auto o = fam::make_view(out.data(), L, 1, kD);

  bool ok = true;
  for (index_t c : chunks) {
    const index_t n = st.tokens();
    // keys are zero like the queries, so q doubles as k
    const fam::status s =
        fam::attend(st, q.rows_from(n, c), q.rows_from(n, c), v.rows_from(n, c), o.rows_from(n, c));
    if (s != fam::status::ok) return std::printf("attend: %s\n", fam::to_string(s)), 1;
    ok = print_ring(st) && ok;
  }

  // Every token saw exactly the keys visible_tokens() names, whatever chunk it came in.
  const fam::mask_spec mask = fam::mask_spec::bswa(kB, kM);
  std::printf("\ntoken  sees positions  output  expected\n");
  for (index_t n = 0; n < L; ++n) {
    const fam::key_range r = fam::visible_tokens(mask, n);
    const double expected = 0.5 * double(r.lo + r.hi);
    const double got = out[std::size_t(n)];
    ok = ok && std::fabs(got - expected) < 1e-5;
    std::printf("%5lld  %5lld..%-6lld  %6.2f  %8.2f\n", (long long)n, (long long)r.lo,
                (long long)r.hi, got, expected);
  }
  std::printf("\n%s\n", ok ? "ring and outputs match ring_geometry and visible_tokens"
                           : "MISMATCH between the ring and the geometry");
  return ok ? 0 : 1;
}
