// Stateless attention over whole sequences: full causal, sliding window and BSWA (one call for
// L tokens), and the fused FAM attention of one block (SPEC §3).
#ifndef FAM_ATTENTION_HPP_
#define FAM_ATTENTION_HPP_

#include <cmath>

#include "backend/reference.hpp"
#include "config.hpp"
#include "detail/attend_impl.hpp"
#include "mask.hpp"
#include "types.hpp"
#include "view.hpp"

FAM_NAMESPACE_BEGIN

namespace detail {

/// Validates the head part of a configuration (heads, kv heads, head dim, scale) for Backend.
template <class Config, class Backend>
status check_heads(const Config& cfg, head_geometry& g) noexcept {
  check_backend<Backend>();
  FAM_TRY(cfg.validate());
  FAM_CHECK(cfg.head_dim() <= Backend::max_head_dim, status::unsupported);
  g = {cfg.heads, cfg.kv_heads, cfg.head_dim(), cfg.scale()};
  return status::ok;
}

}  // namespace detail

/// Attention of a whole sequence of L tokens under `mask` (full causal, sliding window or
/// BSWA; the FAM variant needs its state: use fam_attention or a layer_state).
/// @param cfg  heads, kv heads, head dim and scale (B, M, F of cfg are validated, not used)
/// @param q    [L, H, D]     @param k, v [L, Hkv, D]    @param out [L, H, D]
/// @param lse  optional [L, H] natural-log sum of exp(scale * q.k) over the visible keys
/// @return ok; invalid_argument (config, mask, variant::fam), shape_mismatch, invalid_layout,
///         null_pointer, unsupported (head dim above Backend::max_head_dim). Nothing is written
///         unless ok.
template <class Config, class TQ, class TK, class TV, class Backend = FAM_DEFAULT_BACKEND>
[[nodiscard]] status attention(const Config& cfg, const mask_spec& mask, tensor_view<TQ> q,
                               tensor_view<TK> k, tensor_view<TV> v, tensor_view<float> out,
                               lse_view lse = {}, const Backend& backend = {}) noexcept {
  static_assert(
      is_storage_type_v<std::remove_const_t<TQ>> && is_storage_type_v<std::remove_const_t<TK>>,
      "fam: Q, K and V are float, fam::bf16 or fam::fp16");
  static_assert(std::is_same_v<std::remove_const_t<TK>, std::remove_const_t<TV>>,
                "fam: K and V must have the same storage type");
  detail::head_geometry g{};
  FAM_TRY((detail::check_heads<Config, Backend>(cfg, g)));
  FAM_TRY(mask.validate());
  FAM_CHECK(mask.kind != variant::fam, status::invalid_argument);
  const index_t L = q.rows;
  FAM_CHECK(L >= 0, status::invalid_argument);
  FAM_TRY(detail::check_view(q, L, g.heads, g.head_dim));
  FAM_TRY(detail::check_view(k, L, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(v, L, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(out, L, g.heads, g.head_dim));
  FAM_TRY(detail::check_lse(lse, L, g.heads));
  using Q = std::remove_const_t<TQ>;
  using K = std::remove_const_t<TK>;
  detail::attend_sequence(g, mask, tensor_view<const Q>(q), tensor_view<const K>(k),
                          tensor_view<const K>(v), out, lse, backend);
  return status::ok;
}

/// Inputs and outputs of one fused FAM block (SPEC §3). Query rows are [FAM; block].
/// TQ is the storage type of Qf and Q, TK that of every key and value.
template <class TQ = float, class TK = float>
struct fam_block_args {
  tensor_view<const TK> mem_k, mem_v;  ///< [Lm, Hkv, D], Lm = j*B with j <= M, oldest first
  tensor_view<const TQ> qf;            ///< [F, H, D]   projections of Φ[t-1]
  tensor_view<const TK> kf, vf;        ///< [F, Hkv, D]
  tensor_view<const TQ> q;             ///< [b, H, D]   b <= B tokens of block t
  tensor_view<const TK> k, v;          ///< [b, Hkv, D]
  tensor_view<float> ut;               ///< [b, H, D]   token outputs
  tensor_view<float> uf;               ///< [F, H, D]   FAM outputs (meaningful when b == B)
  lse_view lse_t;                      ///< optional [b, H]
  lse_view lse_f;                      ///< optional [F, H]
};

/// The fused FAM attention of one block: token row i sees every memory key, every FAM key and
/// block keys 0..i; FAM row r sees every FAM key and all b block keys, never the memory.
/// B, M and F come from cfg. With F = 0 this is one block of BSWA.
/// @return ok, or the statuses of attention() (shape_mismatch when Lm is not a multiple of B
///         or exceeds M*B, or b > B).
template <class Config, class TQ, class TK, class Backend = FAM_DEFAULT_BACKEND>
[[nodiscard]] status fam_attention(const Config& cfg, const fam_block_args<TQ, TK>& a,
                                   const Backend& backend = {}) noexcept {
  detail::head_geometry g{};
  FAM_TRY((detail::check_heads<Config, Backend>(cfg, g)));
  const index_t B = cfg.block_size(), F = cfg.fam_len(), b = a.q.rows, Lm = a.mem_k.rows;
  FAM_CHECK(b >= 0 && b <= B, status::shape_mismatch);
  FAM_CHECK(Lm >= 0 && Lm % B == 0 && Lm / B <= cfg.mem_segments(), status::shape_mismatch);
  FAM_TRY(detail::check_view(a.mem_k, Lm, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(a.mem_v, Lm, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(a.qf, F, g.heads, g.head_dim));
  FAM_TRY(detail::check_view(a.kf, F, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(a.vf, F, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(a.q, b, g.heads, g.head_dim));
  FAM_TRY(detail::check_view(a.k, b, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(a.v, b, g.kv_heads, g.head_dim));
  FAM_TRY(detail::check_view(a.ut, b, g.heads, g.head_dim));
  FAM_TRY(detail::check_view(a.uf, F, g.heads, g.head_dim));
  FAM_TRY(detail::check_lse(a.lse_t, b, g.heads));
  FAM_TRY(detail::check_lse(a.lse_f, F, g.heads));
  if (b == 0 && F == 0) return status::ok;

  detail::block_keys<TK> keys;
  keys.memory.block = B;
  keys.memory.n_mem = Lm / B;
  if (Lm > 0) {
    keys.memory.mem_k = a.mem_k.at(0, 0);
    keys.memory.mem_v = a.mem_v.at(0, 0);
    keys.memory.k_stride = a.mem_k.row_stride;
    keys.memory.v_stride = a.mem_v.row_stride;
    keys.memory.k_block_stride = B * a.mem_k.row_stride;
    keys.memory.v_block_stride = B * a.mem_v.row_stride;
    keys.mem_k_head_stride = a.mem_k.head_stride;
    keys.mem_v_head_stride = a.mem_v.head_stride;
  }
  keys.fam = detail::key_source<TK>::from_views(a.kf, a.vf);
  keys.block = detail::key_source<TK>::from_views(a.k, a.v);
  if (b > 0) detail::attend_block_tokens(g, keys, 0, a.q, a.ut, a.lse_t, backend);
  if (F > 0) detail::attend_block_fam(g, keys, a.qf, a.uf, a.lse_f, backend);
  return status::ok;
}

FAM_NAMESPACE_END

#endif  // FAM_ATTENTION_HPP_
