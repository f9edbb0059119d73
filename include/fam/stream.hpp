// Streaming over a layer_state (SPEC §2, §4, §5): tokens in any chunking, the FAM protocol an
// engine drives, rewind, reset, copy, and batches of independent sequences.
//
// The FAM protocol, per layer and sequence:
//   1. begin_fam(state, Qf, Kf, Vf, Φ, fresh)    projections of the initial state Φ[-1]
//   2. attend(state, q, k, v, out, ...)          tokens of block t read the ring, Kf/Vf of
//                                                Φ[t-1] and their own block, causally
//   3. when the call delivers the block's B-th token, it stops there (consumed tells where),
//      pushes the block into the ring and computes Uf = fam_output(); phase() == pending
//   4. the caller computes Φ[t] = FFN(LN2(Uf·Wo + (fresh ? 0 : Φ[t-1]))) + ..., projects it
//      with RoPE at fam_position(r), and calls update_fam(state, Qf, Kf, Vf, Φ[t])
//   5. back to 2 with the rest of the tokens.
// With F = 0 there is no FAM: steps 1, 3 and 4 vanish and attend never stops early.
#ifndef FAM_STREAM_HPP_
#define FAM_STREAM_HPP_

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "attention.hpp"
#include "layer_state.hpp"
#include "types.hpp"

FAM_NAMESPACE_BEGIN

namespace detail {

/// The streaming algorithm, with access to the state's internals.
struct state_access {
  template <class Config, class KV, class TQ, class TK, class TV>
  static status check_step(const layer_state<Config, KV>& st, tensor_view<TQ> q, tensor_view<TK> k,
                           tensor_view<TV> v, tensor_view<float> out, lse_view lse,
                           bool can_stop) noexcept {
    FAM_CHECK(st.initialized_, status::not_initialized);
    const index_t L = q.rows, H = st.H(), Hkv = st.Hkv(), D = st.D();
    FAM_CHECK(L >= 0, status::invalid_argument);
    FAM_TRY(check_view(q, L, H, D));
    FAM_TRY(check_view(k, L, Hkv, D));
    FAM_TRY(check_view(v, L, Hkv, D));
    FAM_TRY(check_view(out, L, H, D));
    FAM_TRY(check_lse(lse, L, H));
    if (L == 0) return status::ok;  // an empty call is valid in every phase (SPEC §1)
    FAM_CHECK(L <= max_tokens - st.n_, status::too_large);  // positions stay inside int64
    FAM_CHECK(st.phase_ != fam_phase::none, status::fam_not_installed);
    FAM_CHECK(st.phase_ != fam_phase::pending, status::fam_update_pending);
    // With FAM, a chunk may only run past the end of the block if the caller can learn where
    // the call stopped.
    const index_t to_block_end = st.cfg_.block_size() - st.block_offset();
    FAM_CHECK(can_stop || st.F() == 0 || L <= to_block_end, status::invalid_argument);
    return status::ok;
  }

  /// Runs a validated step; returns the tokens consumed.
  template <class Config, class KV, class TQ, class TK, class Backend>
  static index_t run_step(layer_state<Config, KV>& st, tensor_view<const TQ> q,
                          tensor_view<const TK> k, tensor_view<const TK> v, tensor_view<float> out,
                          lse_view lse, const Backend& backend) noexcept {
    const index_t L = q.rows, B = st.cfg_.block_size(), D = st.D();
    const head_geometry g{st.H(), st.Hkv(), D, st.cfg_.scale()};
    const ring_geometry ring = st.ring_.geometry;
    index_t done = 0;
    while (done < L) {
      const index_t t = st.current_block(), o = st.block_offset();
      const index_t count = std::min(L - done, B - o);  // tokens of block t in this piece
      // write the piece's keys/values into block t's slot (evicting block t-M-1 on o == 0)
      const index_t row0 = ring.slot_of_block(t) * B + o;
      for (index_t i = 0; i < count; ++i)
        for (index_t h = 0; h < g.kv_heads; ++h) {
          const TK* krow = k.at(done + i, h);
          const TK* vrow = v.at(done + i, h);
          KV* vdst = st.ring_.v_row(h, row0 + i);
          for (index_t d = 0; d < D; ++d) {
            st.ring_.k_at(h, row0 + i, d) = convert<KV>(krow[d]);
            vdst[d] = convert<KV>(vrow[d]);
          }
        }
      const block_keys<KV> keys = ring_keys(st, t, o + count);
      attend_block_tokens(g, keys, o, q.rows_from(done, count), out.rows_from(done, count),
                          lse.rows_from(done), backend);
      st.n_ += count;
      done += count;
      if (st.block_offset() == 0 && st.F() > 0) {
        // block t is complete: FAM rows compress it (SPEC §3), then wait for update_fam
        attend_block_fam(g, ring_keys(st, t, B), st.fam_q(), make_view(st.uf_, st.F(), g.heads, D),
                         make_lse_view(st.uf_lse_, g.heads), backend);
        st.phase_ = fam_phase::pending;
        break;
      }
    }
    return done;
  }

  /// Storage conversion: exact for equal types, rounding to nearest even otherwise.
  template <class To, class From>
  static To convert(From x) noexcept {
    if constexpr (std::is_same_v<To, From>) {
      return x;
    } else {
      return from_float<To>(to_float(x));
    }
  }

  /// Keys of block t with `filled` rows present: memory blocks from the ring, the installed
  /// FAM, and block t's own slot. Ring and FAM keys are stored transposed (K^T per block).
  template <class Config, class KV>
  static block_keys<KV> ring_keys(const layer_state<Config, KV>& st, index_t t,
                                  index_t filled) noexcept {
    const ring_geometry ring = st.ring_.geometry;
    const index_t B = st.cfg_.block_size(), D = st.D(), F = st.F();
    block_keys<KV> keys;
    keys.memory.block = B;
    keys.memory.first_block = ring.first_memory_block(t * B);
    keys.memory.n_mem = t - keys.memory.first_block;
    keys.memory.ring_blocks = ring.blocks();
    keys.memory.mem_k = st.ring_.k;
    keys.memory.mem_v = st.ring_.v;
    keys.memory.k_block_stride = st.ring_.k_slot_elements();
    keys.memory.v_block_stride = B * D;
    keys.memory.k_stride = 1;
    keys.memory.k_dim_stride = ring_key_tile;
    keys.memory.k_tile = ring_key_tile;
    keys.memory.k_tile_stride = st.ring_.k_tile_elements();
    keys.memory.v_stride = D;
    keys.mem_k_head_stride = st.ring_.k_head_stride();
    keys.mem_v_head_stride = st.ring_.v_head_stride();
    if (F > 0) keys.fam = {st.kf_, st.vf_, F * D, F * D, 1, F, D, F, 0, 0};
    const index_t slot = ring.slot_of_block(t);
    keys.block = {st.ring_.k_slot(0, slot),
                  st.ring_.v_slot(0, slot),
                  st.ring_.k_head_stride(),
                  st.ring_.v_head_stride(),
                  1,
                  ring_key_tile,
                  D,
                  filled,
                  ring_key_tile,
                  st.ring_.k_tile_elements()};
    return keys;
  }

  template <class Config, class KV, class TQ, class TK, class TV, class TP>
  static status install(layer_state<Config, KV>& st, tensor_view<TQ> qf, tensor_view<TK> kf,
                        tensor_view<TV> vf, tensor_view<TP> phi) noexcept {
    const index_t F = st.F(), D = st.D();
    FAM_TRY(check_view(qf, F, st.H(), D));
    FAM_TRY(check_view(kf, F, st.Hkv(), D));
    FAM_TRY(check_view(vf, F, st.Hkv(), D));
    // Φ is kept by the state when phi_dim > 0 (then it is required, so a stale Φ can never
    // be read back as the next residual), and by the caller otherwise.
    if (st.cfg_.phi_dim > 0) FAM_TRY(check_view(phi, F, 1, st.cfg_.phi_dim));
    if (F == 0) return status::ok;
    for (index_t r = 0; r < F; ++r) {
      for (index_t h = 0; h < st.H(); ++h)
        for (index_t d = 0; d < D; ++d) st.qf_[(r * st.H() + h) * D + d] = to_float(qf.at(r, h)[d]);
      for (index_t h = 0; h < st.Hkv(); ++h)
        for (index_t d = 0; d < D; ++d) {
          st.kf_[(h * D + d) * F + r] = convert<KV>(kf.at(r, h)[d]);  // K^T [Hkv, D, F]
          st.vf_[(h * F + r) * D + d] = convert<KV>(vf.at(r, h)[d]);  // V [Hkv, F, D]
        }
      if (st.cfg_.phi_dim > 0)
        for (index_t d = 0; d < st.cfg_.phi_dim; ++d)
          st.phi_[r * st.cfg_.phi_dim + d] = to_float(phi.at(r, 0)[d]);
    }
    return status::ok;
  }

  template <class Config, class KV>
  static unsigned char* storage(layer_state<Config, KV>& st) noexcept {
    return st.storage_;
  }
  template <class Config, class KV>
  static const unsigned char* storage(const layer_state<Config, KV>& st) noexcept {
    return st.storage_;
  }
  template <class Config, class KV>
  static std::size_t bytes(const layer_state<Config, KV>& st) noexcept {
    return st.bytes_;
  }
  template <class Config, class KV>
  static void set_meta(layer_state<Config, KV>& st, index_t n, fam_phase p, bool fresh) noexcept {
    st.n_ = n;
    st.phase_ = p;
    st.fresh_ = fresh;
  }
  template <class Config, class KV>
  static void clear(layer_state<Config, KV>& st) noexcept {
    st.clear();
  }
};

template <class Config>
bool same_config(const Config& a, const Config& b) noexcept {
  return a.head_dim() == b.head_dim() && a.block_size() == b.block_size() &&
         a.mem_segments() == b.mem_segments() && a.fam_len() == b.fam_len() && a.heads == b.heads &&
         a.kv_heads == b.kv_heads && a.phi_dim == b.phi_dim && a.scale() == b.scale() &&
         a.position_offset == b.position_offset;
}

template <class T>
using plain_t = std::remove_const_t<T>;

}  // namespace detail

/// Attends the next L tokens of the sequence (q [L, H, D], k/v [L, Hkv, D], out [L, H, D],
/// optional lse [L, H]) with their keys stored in the ring first. Any chunking gives the same
/// numbers, bitwise.
/// @param consumed  receives the number of tokens processed. With F > 0 the call stops after
///        the token that completes a block (phase() becomes pending); pass nullptr to require
///        that the chunk does not cross the end of the block (else invalid_argument).
/// @return ok; not_initialized; fam_not_installed (F > 0, no begin_fam yet);
///         fam_update_pending (update_fam first); shape_mismatch, invalid_layout, null_pointer;
///         too_large for a chunk that would take the stream past max_tokens.
///         On error nothing is written and the state is unchanged.
template <class Config, class KV, class TQ, class TK, class TV, class Backend = FAM_DEFAULT_BACKEND>
[[nodiscard]] status attend(layer_state<Config, KV>& st, tensor_view<TQ> q, tensor_view<TK> k,
                            tensor_view<TV> v, tensor_view<float> out, lse_view lse = {},
                            index_t* consumed = nullptr, const Backend& backend = {}) noexcept {
  static_assert(std::is_same_v<detail::plain_t<TK>, detail::plain_t<TV>>,
                "fam: K and V must have the same storage type");
  detail::check_backend<Backend>();
  FAM_TRY(detail::state_access::check_step(st, q, k, v, out, lse, consumed != nullptr));
  FAM_CHECK(st.config().head_dim() <= Backend::max_head_dim, status::unsupported);
  using Q = detail::plain_t<TQ>;
  using K = detail::plain_t<TK>;
  const index_t n =
      detail::state_access::run_step(st, tensor_view<const Q>(q), tensor_view<const K>(k),
                                     tensor_view<const K>(v), out, lse, backend);
  if (consumed != nullptr) *consumed = n;
  return status::ok;
}

/// Installs the projections of an initial FAM state Φ[-1] (SPEC §4): Qf [F, H, D], Kf/Vf
/// [F, Hkv, D] (RoPE'd at fam_position(r)), and Φ [F, phi_dim] (required when the config's
/// phi_dim > 0, ignored otherwise). Allowed at a block boundary when no update is pending.
/// @param fresh  the zero-residual rule applies to this state's first update
/// @return ok; fam_update_pending; invalid_argument (inside a block); view errors.
template <class Config, class KV, class TQ, class TK, class TV, class TP = const float>
[[nodiscard]] status begin_fam(layer_state<Config, KV>& st, tensor_view<TQ> qf, tensor_view<TK> kf,
                               tensor_view<TV> vf, tensor_view<TP> phi = {},
                               bool fresh = true) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(st.phase() != fam_phase::pending, status::fam_update_pending);
  FAM_CHECK(st.block_offset() == 0, status::invalid_argument);
  FAM_TRY(detail::state_access::install(st, qf, kf, vf, phi));
  detail::state_access::set_meta(st, st.tokens(), fam_phase::installed,
                                 fresh && st.config().fam_len() > 0);
  return status::ok;
}

/// Installs the projections of Φ[t] after block t completed (phase() == pending), and
/// clears `fresh`. Same views as begin_fam.
/// @return ok; no_update_pending; view errors (state unchanged).
template <class Config, class KV, class TQ, class TK, class TV, class TP = const float>
[[nodiscard]] status update_fam(layer_state<Config, KV>& st, tensor_view<TQ> qf, tensor_view<TK> kf,
                                tensor_view<TV> vf, tensor_view<TP> phi = {}) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(st.phase() == fam_phase::pending, status::no_update_pending);
  FAM_TRY(detail::state_access::install(st, qf, kf, vf, phi));
  detail::state_access::set_meta(st, st.tokens(), fam_phase::installed, false);
  return status::ok;
}

/// Forgets the last `count` tokens, which must all lie in the current, incomplete block
/// (speculative decoding). A completed block cannot be taken back: its FAM update and ring
/// push already happened.
/// @return ok; out_of_range (count < 0 or more than block_offset()); not_initialized.
template <class Config, class KV>
[[nodiscard]] status rewind(layer_state<Config, KV>& st, index_t count) noexcept {
  FAM_CHECK(st.initialized(), status::not_initialized);
  FAM_CHECK(count >= 0 && count <= st.block_offset(), status::out_of_range);
  detail::state_access::set_meta(st, st.tokens() - count, st.phase(), st.fresh());
  return status::ok;
}

/// Back to the state right after init(): no tokens, no FAM, zeroed storage.
template <class Config, class KV>
void reset(layer_state<Config, KV>& st) noexcept {
  if (st.initialized()) detail::state_access::clear(st);
}

/// Makes `dst` a bitwise copy of `src` (fork a sequence). dst must be initialized with the
/// same configuration; nothing is allocated.
/// @return ok; not_initialized; shape_mismatch (different configuration; dst unchanged).
template <class Config, class KV>
[[nodiscard]] status copy_state(layer_state<Config, KV>& dst,
                                const layer_state<Config, KV>& src) noexcept {
  FAM_CHECK(dst.initialized() && src.initialized(), status::not_initialized);
  FAM_CHECK(detail::same_config(dst.config(), src.config()), status::shape_mismatch);
  if (&dst == &src) return status::ok;
  using A = detail::state_access;
  std::memcpy(A::storage(dst), A::storage(src), A::bytes(src));
  A::set_meta(dst, src.tokens(), src.phase(), src.fresh());
  return status::ok;
}

/// One member of a batch: a sequence's state and its next tokens.
template <class Config, class KV = float, class TQ = float>
struct sequence_step {
  layer_state<Config, KV>* state = nullptr;
  tensor_view<const TQ> q;     ///< [L, H, D]; L may be 0
  tensor_view<const KV> k, v;  ///< [L, Hkv, D]
  tensor_view<float> out;      ///< [L, H, D]
  lse_view lse;                ///< optional [L, H]
  index_t consumed = 0;        ///< set by attend_batch
};

/// Processes several independent sequences in one call, each with its own state, position
/// and length (zero allowed). Every member is validated first: on any error nothing is
/// processed and no state changes. Each member stops at a FAM block end as attend() does.
/// @return ok; invalid_argument (a null state, or one state twice); the statuses of attend.
template <class Config, class KV, class TQ, class Backend = FAM_DEFAULT_BACKEND>
[[nodiscard]] status attend_batch(sequence_step<Config, KV, TQ>* steps, index_t count,
                                  const Backend& backend = {}) noexcept {
  detail::check_backend<Backend>();
  FAM_CHECK(count >= 0, status::invalid_argument);
  FAM_CHECK(count == 0 || steps != nullptr, status::null_pointer);
  using A = detail::state_access;
  for (index_t i = 0; i < count; ++i) {
    const sequence_step<Config, KV, TQ>& s = steps[i];
    FAM_CHECK(s.state != nullptr, status::invalid_argument);
    for (index_t j = 0; j < i; ++j) FAM_CHECK(steps[j].state != s.state, status::invalid_argument);
    FAM_TRY(A::check_step(*s.state, s.q, s.k, s.v, s.out, s.lse, true));
    FAM_CHECK(s.state->config().head_dim() <= Backend::max_head_dim, status::unsupported);
  }
  for (index_t i = 0; i < count; ++i) {
    sequence_step<Config, KV, TQ>& s = steps[i];
    s.consumed = A::run_step(*s.state, s.q, s.k, s.v, s.out, s.lse, backend);
  }
  return status::ok;
}

FAM_NAMESPACE_END

#endif  // FAM_STREAM_HPP_
