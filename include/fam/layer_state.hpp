// The streaming state of one layer of one sequence: the KV ring, the cached projections of
// the FAM state Φ[t-1] (Qf, Kf, Vf), the pending FAM output Uf, Φ itself, the `fresh` flag and
// the token count. All memory is fixed at init(): owned, or the caller's.
// The operations on it (attend, FAM install/update, rewind, reset, copy) are in stream.hpp;
// save/restore is in state_io.hpp.
#ifndef FAM_LAYER_STATE_HPP_
#define FAM_LAYER_STATE_HPP_

#include <cstring>
#include <memory>
#include <new>

#include "config.hpp"
#include "kv_ring.hpp"
#include "view.hpp"

FAM_NAMESPACE_BEGIN

namespace detail {
struct state_access;
}

/// Where a state's FAM stands.
enum class fam_phase : int {
  none = 0,       ///< F > 0 and no FAM installed yet (begin_fam is needed before tokens)
  installed = 1,  ///< tokens attend with the installed Kf, Vf (always so when F = 0)
  pending = 2,    ///< a block completed: read fam_output(), then update_fam()
};

/// Streaming state of one layer and one sequence (SPEC §2, §4, §5).
/// Not thread-safe: one state must not be used by two calls at once.
template <class Config>
class layer_state {
 public:
  using config_type = Config;

  layer_state() = default;
  layer_state(layer_state&&) noexcept = default;
  layer_state& operator=(layer_state&&) noexcept = default;
  layer_state(const layer_state&) = delete;  // copying allocates: init() + copy_state()
  layer_state& operator=(const layer_state&) = delete;

  /// Floats of storage a state of this configuration needs (0 if cfg is invalid).
  static index_t storage_floats(const Config& cfg) noexcept {
    if (cfg.validate() != status::ok) return 0;
    const index_t D = cfg.head_dim(), F = cfg.fam_len();
    return 2 * cfg.kv_heads * cfg.ring_rows() * D   // ring K, V  [Hkv, (M+1)B, D]
           + 2 * cfg.heads * F * D                   // Qf, Uf     [F, H, D]
           + 2 * cfg.kv_heads * F * D                // Kf, Vf     [F, Hkv, D]
           + cfg.heads * F                           // Uf lse     [F, H]
           + F * cfg.phi_dim;                        // Φ          [F, phi_dim]
  }

  /// Allocates zeroed storage once. invalid_argument/too_large for a bad cfg, out_of_memory.
  [[nodiscard]] status init(const Config& cfg) noexcept {
    FAM_TRY(cfg.validate());
    const index_t n = storage_floats(cfg);
    std::unique_ptr<float[]> mem(new (std::nothrow) float[static_cast<std::size_t>(n > 0 ? n : 1)]);
    FAM_CHECK(mem != nullptr, status::out_of_memory);
    owned_ = std::move(mem);
    bind(cfg, owned_.get());
    return status::ok;
  }

  /// Uses caller storage of at least storage_floats(cfg) floats (4-byte aligned), which must
  /// outlive the state. The storage is zeroed.
  [[nodiscard]] status init(const Config& cfg, float* storage, index_t floats) noexcept {
    FAM_TRY(cfg.validate());
    const index_t n = storage_floats(cfg);
    FAM_CHECK(n == 0 || storage != nullptr, status::null_pointer);
    FAM_CHECK(floats >= n, status::buffer_too_small);
    owned_.reset();
    bind(cfg, storage);
    return status::ok;
  }

  bool initialized() const noexcept { return initialized_; }
  const Config& config() const noexcept { return cfg_; }

  /// Tokens processed since init/reset (n); the next token has index n.
  index_t tokens() const noexcept { return n_; }
  /// Block of the next token (t = n / B) and its offset in that block.
  index_t current_block() const noexcept { return n_ / cfg_.block_size(); }
  index_t block_offset() const noexcept { return n_ % cfg_.block_size(); }

  fam_phase phase() const noexcept { return phase_; }
  /// True while the FAM state came from begin_fam(..., fresh = true) and has not been updated
  /// yet: the next update uses a zero residual (SPEC §4).
  bool fresh() const noexcept { return fresh_; }
  /// Switch the zero-residual rule for the next update.
  void set_fresh(bool f) noexcept { fresh_ = f; }

  /// Position of token i of the next call: n + i + position_offset.
  index_t token_position(index_t i) const noexcept { return n_ + i + cfg_.position_offset; }
  /// Position of row r of the FAM that the next tokens read (or that update_fam installs):
  /// t*B - F + r + position_offset with t = ceil-to-block of the token count (SPEC §4).
  index_t fam_position(index_t r) const noexcept {
    return current_block() * cfg_.block_size() - cfg_.fam_len() + r + cfg_.position_offset;
  }

  /// Uf [F, H, D]: the FAM rows' attention output of the block that just completed
  /// (meaningful while phase() == pending).
  tensor_view<const float> fam_output() const noexcept { return make_view<const float>(uf_, F(), H(), D()); }
  /// Its log-sum-exp, [F, H] contiguous.
  const float* fam_output_lse() const noexcept { return uf_lse_; }
  /// Φ [F, phi_dim] as last installed (rows = F, heads = 1, head_dim = phi_dim).
  tensor_view<const float> phi() const noexcept { return make_view<const float>(phi_, F(), 1, cfg_.phi_dim); }
  /// The installed projections of Φ: Qf [F, H, D], Kf and Vf [F, Hkv, D].
  tensor_view<const float> fam_q() const noexcept { return make_view<const float>(qf_, F(), H(), D()); }
  tensor_view<const float> fam_k() const noexcept { return make_view<const float>(kf_, F(), Hkv(), D()); }
  tensor_view<const float> fam_v() const noexcept { return make_view<const float>(vf_, F(), Hkv(), D()); }
  /// The ring (read-only use: positions of its rows follow from tokens(), see ring_geometry).
  kv_ring_view ring() const noexcept { return ring_; }

 private:
  friend struct detail::state_access;

  index_t D() const noexcept { return cfg_.head_dim(); }
  index_t F() const noexcept { return cfg_.fam_len(); }
  index_t H() const noexcept { return cfg_.heads; }
  index_t Hkv() const noexcept { return cfg_.kv_heads; }

  void bind(const Config& cfg, float* p) noexcept {
    cfg_ = cfg;
    storage_ = p;
    floats_ = storage_floats(cfg);
    const index_t ring = cfg.kv_heads * cfg.ring_rows() * cfg.head_dim();
    const index_t fq = cfg.heads * cfg.fam_len() * cfg.head_dim();
    const index_t fkv = cfg.kv_heads * cfg.fam_len() * cfg.head_dim();
    ring_ = {p, p + ring, cfg.kv_heads, cfg.head_dim(), {cfg.block_size(), cfg.mem_segments()}};
    p += 2 * ring;
    qf_ = p, p += fq;
    kf_ = p, p += fkv;
    vf_ = p, p += fkv;
    uf_ = p, p += fq;
    uf_lse_ = p, p += cfg.heads * cfg.fam_len();
    phi_ = p;
    initialized_ = true;
    clear();
  }

  /// Back to a fresh state: zero storage, no tokens, no FAM.
  void clear() noexcept {
    if (floats_ > 0) std::memset(storage_, 0, static_cast<std::size_t>(floats_) * sizeof(float));
    n_ = 0;
    phase_ = F() > 0 ? fam_phase::none : fam_phase::installed;
    fresh_ = false;
  }

  Config cfg_{};
  std::unique_ptr<float[]> owned_;
  float* storage_ = nullptr;
  index_t floats_ = 0;
  kv_ring_view ring_{};
  float* qf_ = nullptr;      // [F, H, D]
  float* kf_ = nullptr;      // [F, Hkv, D]
  float* vf_ = nullptr;      // [F, Hkv, D]
  float* uf_ = nullptr;      // [F, H, D]
  float* uf_lse_ = nullptr;  // [F, H]
  float* phi_ = nullptr;     // [F, phi_dim]
  index_t n_ = 0;
  fam_phase phase_ = fam_phase::installed;
  bool fresh_ = false;
  bool initialized_ = false;
};

FAM_NAMESPACE_END

#endif  // FAM_LAYER_STATE_HPP_
