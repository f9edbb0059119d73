// The streaming state of one layer of one sequence: the KV ring, the cached projections of
// the FAM state Φ[t-1] (Qf, Kf, Vf), the pending FAM output Uf, Φ itself, the `fresh` flag and
// the token count. All memory is fixed at init(): owned, or the caller's.
// The operations on it (attend, FAM install/update, rewind, reset, copy) are in stream.hpp;
// save/restore is in state_io.hpp.
#ifndef FAM_LAYER_STATE_HPP_
#define FAM_LAYER_STATE_HPP_

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>

#include "config.hpp"
#include "kv_ring.hpp"
#include "types.hpp"
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
/// @tparam Config an attention_config
/// @tparam KV     storage type of the ring and of Kf, Vf: float, fam::bf16 or fam::fp16
/// Not thread-safe: one state must not be used by two calls at once.
template <class Config, class KV = float>
class layer_state {
  static_assert(is_storage_type_v<KV>, "fam: KV is float, fam::bf16 or fam::fp16");

 public:
  using config_type = Config;
  using kv_type = KV;
  /// Alignment of every region of the state's storage (SIMD loads).
  static constexpr std::size_t alignment = 64;

  layer_state() = default;
  layer_state(layer_state&&) noexcept = default;
  layer_state& operator=(layer_state&&) noexcept = default;
  layer_state(const layer_state&) = delete;  // copying allocates: init() + copy_state()
  layer_state& operator=(const layer_state&) = delete;

  /// Bytes of storage a state of this configuration needs (0 if cfg is invalid).
  static std::size_t storage_bytes(const Config& cfg) noexcept {
    if (cfg.validate() != status::ok) return 0;
    return layout_of(cfg).total;
  }

  /// Allocates zeroed storage once. invalid_argument/too_large for a bad cfg, out_of_memory.
  [[nodiscard]] status init(const Config& cfg) noexcept {
    FAM_TRY(cfg.validate());
    const std::size_t n = storage_bytes(cfg);
    std::unique_ptr<unsigned char[], aligned_delete> mem(static_cast<unsigned char*>(
        ::operator new[](n > 0 ? n : 1, std::align_val_t(alignment), std::nothrow)));
    FAM_CHECK(mem != nullptr, status::out_of_memory);
    owned_ = std::move(mem);
    bind(cfg, owned_.get());
    return status::ok;
  }

  /// Uses caller storage of at least storage_bytes(cfg) bytes, aligned to `alignment`, which
  /// must outlive the state. The storage is zeroed.
  /// @return ok; null_pointer; buffer_too_small; invalid_layout (misaligned); cfg errors.
  [[nodiscard]] status init(const Config& cfg, void* storage, std::size_t bytes) noexcept {
    FAM_TRY(cfg.validate());
    const std::size_t n = storage_bytes(cfg);
    FAM_CHECK(storage != nullptr, status::null_pointer);
    FAM_CHECK(bytes >= n, status::buffer_too_small);
    FAM_CHECK(reinterpret_cast<std::uintptr_t>(storage) % alignment == 0, status::invalid_layout);
    owned_.reset();
    bind(cfg, static_cast<unsigned char*>(storage));
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
  /// t*B - F + r + position_offset for the block t of the next token (SPEC §4).
  index_t fam_position(index_t r) const noexcept {
    return current_block() * cfg_.block_size() - cfg_.fam_len() + r + cfg_.position_offset;
  }

  /// Uf [F, H, D]: the FAM rows' attention output of the block that just completed
  /// (meaningful while phase() == pending).
  tensor_view<const float> fam_output() const noexcept {
    return make_view<const float>(uf_, F(), H(), D());
  }
  /// Its log-sum-exp, [F, H] contiguous.
  const float* fam_output_lse() const noexcept { return uf_lse_; }
  /// Φ [F, phi_dim] as last installed (rows = F, heads = 1, head_dim = phi_dim).
  tensor_view<const float> phi() const noexcept {
    return make_view<const float>(phi_, F(), 1, cfg_.phi_dim);
  }
  /// The installed query projection Qf [F, H, D] (fp32).
  tensor_view<const float> fam_q() const noexcept {
    return make_view<const float>(qf_, F(), H(), D());
  }
  /// The ring (positions of its rows follow from tokens(), see ring_geometry). Writable so that
  /// tests can poison dead rows; the library never reads a row no query may see.
  kv_ring_view<KV> ring() const noexcept { return ring_; }

 private:
  friend struct detail::state_access;

  struct aligned_delete {
    void operator()(unsigned char* p) const noexcept {
      ::operator delete[](p, std::align_val_t(alignment));
    }
  };

  /// Byte offsets of each region, every one aligned.
  struct layout {
    std::size_t ring_k, ring_v, kf, vf, qf, uf, uf_lse, phi, total;
  };
  static std::size_t aligned(std::size_t n) noexcept {
    return (n + alignment - 1) / alignment * alignment;
  }
  static layout layout_of(const Config& c) noexcept {
    const auto D = static_cast<std::size_t>(c.head_dim());
    const auto F = static_cast<std::size_t>(c.fam_len());
    const auto H = static_cast<std::size_t>(c.heads), Hkv = static_cast<std::size_t>(c.kv_heads);
    const auto blocks = static_cast<std::size_t>(c.mem_segments() + 1);
    const auto tiled_rows = static_cast<std::size_t>((c.block_size() + ring_key_tile - 1) /
                                                     ring_key_tile * ring_key_tile);
    const std::size_t ring_k = aligned(Hkv * blocks * tiled_rows * D * sizeof(KV));  // K tiles
    const std::size_t ring_v =
        aligned(Hkv * static_cast<std::size_t>(c.ring_rows()) * D * sizeof(KV));
    const std::size_t fkv = aligned(Hkv * F * D * sizeof(KV));
    const std::size_t fq = aligned(H * F * D * sizeof(float));
    layout l{};
    l.ring_k = 0;
    l.ring_v = l.ring_k + ring_k;
    l.kf = l.ring_v + ring_v;
    l.vf = l.kf + fkv;
    l.qf = l.vf + fkv;
    l.uf = l.qf + fq;
    l.uf_lse = l.uf + fq;
    l.phi = l.uf_lse + aligned(H * F * sizeof(float));
    l.total = l.phi + aligned(F * static_cast<std::size_t>(c.phi_dim) * sizeof(float));
    return l;
  }

  index_t D() const noexcept { return cfg_.head_dim(); }
  index_t F() const noexcept { return cfg_.fam_len(); }
  index_t H() const noexcept { return cfg_.heads; }
  index_t Hkv() const noexcept { return cfg_.kv_heads; }

  void bind(const Config& cfg, unsigned char* p) noexcept {
    cfg_ = cfg;
    storage_ = p;
    const layout l = layout_of(cfg);
    bytes_ = l.total;
    ring_ = {reinterpret_cast<KV*>(p + l.ring_k),
             reinterpret_cast<KV*>(p + l.ring_v),
             cfg.kv_heads,
             cfg.head_dim(),
             {cfg.block_size(), cfg.mem_segments()}};
    kf_ = reinterpret_cast<KV*>(p + l.kf);
    vf_ = reinterpret_cast<KV*>(p + l.vf);
    qf_ = reinterpret_cast<float*>(p + l.qf);
    uf_ = reinterpret_cast<float*>(p + l.uf);
    uf_lse_ = reinterpret_cast<float*>(p + l.uf_lse);
    phi_ = reinterpret_cast<float*>(p + l.phi);
    initialized_ = true;
    clear();
  }

  /// Back to a fresh state: zero storage, no tokens, no FAM.
  void clear() noexcept {
    if (bytes_ > 0) std::memset(storage_, 0, bytes_);
    n_ = 0;
    phase_ = F() > 0 ? fam_phase::none : fam_phase::installed;
    fresh_ = false;
  }

  Config cfg_{};
  std::unique_ptr<unsigned char[], aligned_delete> owned_;
  unsigned char* storage_ = nullptr;
  std::size_t bytes_ = 0;
  kv_ring_view<KV> ring_{};
  KV* kf_ = nullptr;         // [Hkv, D, F]: K^T of the FAM rows, like a ring block
  KV* vf_ = nullptr;         // [Hkv, F, D]
  float* qf_ = nullptr;      // [F, H, D]
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
