// Compile-only: instantiates every entry point of the CUDA adapter for every storage type, so
// that every kernel (simple and tensor-core, head-dim pads 64/128/256, split merge, copies) is
// compiled for each target architecture. The variant (full, sliding window, BSWA, FAM) is a
// run-time argument of the same kernels: the functions below cover all of them. The SASS of
// this object is what tests/cuda/check_sass.sh inspects.
#include "fam/cuda/fam_cuda.cuh"

namespace fc = fam::cuda;
using cfg_t = fam::dynamic_config;

#define FAM_CUDA_INSTANTIATE(T)                                                                  \
  template fam::status fc::can_implement(const fc::attention_arguments<T, cfg_t>&);              \
  template std::size_t fc::get_workspace_size(const fc::attention_arguments<T, cfg_t>&);         \
  template fam::status fc::run(const fc::attention_arguments<T, cfg_t>&, void*, std::size_t,     \
                               cudaStream_t);                                                    \
  template fam::status fc::can_implement(const fc::fam_block_arguments<T, cfg_t>&);              \
  template std::size_t fc::get_workspace_size(const fc::fam_block_arguments<T, cfg_t>&);         \
  template fam::status fc::run(const fc::fam_block_arguments<T, cfg_t>&, void*, std::size_t,     \
                               cudaStream_t);                                                    \
  template class fc::device_state<cfg_t, T>;                                                     \
  template fam::status fc::begin_fam(fc::device_state<cfg_t, T>&, fam::tensor_view<const T>,     \
                                     fam::tensor_view<const T>, fam::tensor_view<const T>, bool, \
                                     const fc::context&);                                        \
  template fam::status fc::update_fam(fc::device_state<cfg_t, T>&, fam::tensor_view<const T>,    \
                                      fam::tensor_view<const T>, fam::tensor_view<const T>,      \
                                      const fc::context&);                                       \
  template fam::status fc::attend(fc::device_state<cfg_t, T>&, fam::tensor_view<const T>,        \
                                  fam::tensor_view<const T>, fam::tensor_view<const T>,          \
                                  fam::tensor_view<float>, fam::lse_view, fam::index_t*,         \
                                  const fc::context&);                                           \
  template fam::status fc::rewind(fc::device_state<cfg_t, T>&, fam::index_t);                    \
  template fam::status fc::reset(fc::device_state<cfg_t, T>&, const fc::context&);               \
  template fam::status fc::copy_state(fc::device_state<cfg_t, T>&,                               \
                                      const fc::device_state<cfg_t, T>&, const fc::context&);

FAM_CUDA_INSTANTIATE(float)
FAM_CUDA_INSTANTIATE(fam::bf16)
FAM_CUDA_INSTANTIATE(fam::fp16)

// Every variant x storage type spelled out: full, sliding window and BSWA through run(), FAM
// through a fused block and through the streaming protocol. Compiled (never called) for each
// architecture, so a change that breaks one combination fails the build here.
namespace {
template <class T>
fam::status every_variant(const fam::tensor_view<const T>& q, const fam::tensor_view<const T>& kv,
                          const fam::tensor_view<float>& out, cudaStream_t stream) {
  cfg_t cfg(q.head_dim, 64, 3, 16);
  cfg.set_heads(q.heads, kv.heads);
  const fam::mask_spec masks[] = {fam::mask_spec::full(), fam::mask_spec::sliding_window(256),
                                  fam::mask_spec::bswa(64, 3)};
  for (const fam::mask_spec& m : masks) {
    fc::attention_arguments<T> a;
    a.cfg = cfg;
    a.mask = m;
    a.q = q;
    a.k = a.v = kv;
    a.out = out;
    FAM_TRY(fc::run(a, nullptr, 0, stream));
  }
  fc::fam_block_arguments<T> b;
  b.cfg = cfg;
  b.qf = q.rows_from(0, 16);
  b.kf = b.vf = kv.rows_from(0, 16);
  b.q = q.rows_from(0, 64);
  b.k = b.v = kv.rows_from(0, 64);
  b.ut = out.rows_from(0, 64);
  b.uf = out.rows_from(64, 16);
  FAM_TRY(fc::run(b, nullptr, 0, stream));
  fc::device_state<cfg_t, T> st;
  FAM_TRY(st.init(cfg, nullptr, 0, stream));
  fc::context ctx;
  ctx.stream = stream;
  FAM_TRY(fc::begin_fam(st, b.qf, b.kf, b.vf, true, ctx));
  fam::index_t used = 0;
  FAM_TRY(fc::attend(st, q, kv, kv, out, {}, &used, ctx));
  return fc::update_fam(st, b.qf, b.kf, b.vf, ctx);
}
}  // namespace

fam::status fam_cuda_every_variant_fp32(const fam::tensor_view<const float>& q,
                                        const fam::tensor_view<const float>& kv,
                                        const fam::tensor_view<float>& out, cudaStream_t s) {
  return every_variant(q, kv, out, s);
}
fam::status fam_cuda_every_variant_bf16(const fam::tensor_view<const fam::bf16>& q,
                                        const fam::tensor_view<const fam::bf16>& kv,
                                        const fam::tensor_view<float>& out, cudaStream_t s) {
  return every_variant(q, kv, out, s);
}
fam::status fam_cuda_every_variant_fp16(const fam::tensor_view<const fam::fp16>& q,
                                        const fam::tensor_view<const fam::fp16>& kv,
                                        const fam::tensor_view<float>& out, cudaStream_t s) {
  return every_variant(q, kv, out, s);
}
