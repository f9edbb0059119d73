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
