// The headers the CUDA adapter shares with the CPU library compile under nvcc -std=c++17, each on
// its own, and their FAM_HOST_DEVICE functions are callable from device code. The host half runs
// without a GPU (ctest cuda/shared_headers); the kernel is compiled, never launched.
#if defined(__NVCC__)
#pragma nv_diag_suppress 554  // view.hpp: tensor_view<const T>'s no-op conversion operator
#endif
#include "fam/config.hpp"
#include "fam/detail/key_spans.hpp"
#include "fam/detail/macros.hpp"
#include "fam/kv_ring.hpp"
#include "fam/layer_state.hpp"
#include "fam/mask.hpp"
#include "fam/status.hpp"
#include "fam/types.hpp"
#include "fam/version.hpp"
#include "fam/view.hpp"
// The CPU umbrella header, as host code of a .cu file.
#include "fam/fam.hpp"
#if defined(__NVCC__)
#pragma nv_diag_default 554
#endif

#include <cstdio>

namespace {

/// Everything the shared headers mark FAM_HOST_DEVICE, in one function for both sides.
FAM_HOST_DEVICE long long probe(long long n) {
  const fam::mask_spec bswa = fam::mask_spec::bswa(4, 2), fam_mask = fam::mask_spec::fam(4, 1, 2);
  const fam::mask_spec window = fam::mask_spec::sliding_window(3), full = fam::mask_spec::full();
  long long acc = fam::visible_tokens(bswa, n).lo + fam::visible_tokens(window, n).lo +
                  fam::visible_tokens(full, n).hi + fam::block_of(n, 4);
  acc += fam::visible(bswa, n, n > 0 ? n - 1 : 0) ? 1 : 0;
  acc += fam::visible(fam_mask, fam::node::tok(n), fam::node::fam_of(fam::block_of(n, 4), 1));
  acc += static_cast<long long>(bswa.validate()) + static_cast<long long>(window.validate());
  const fam::ring_geometry ring{4, 2};
  acc += ring.blocks() + ring.rows() + ring.slot_of_block(n) + ring.row_of_token(n) +
         ring.first_memory_block(n);
  const float keys[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  fam::kernel::key_span<float> span;
  span.k = keys;
  span.k_stride = 1;
  span.count = 4;
  acc += static_cast<long long>(*span.key(2));
  acc += fam::kernel::row_mask{true, 1}.visible(2, 10);
  const fam::bf16 b = fam::to_bf16(1.5f);
  const fam::fp16 h = fam::to_fp16(-2.25f);
  acc += static_cast<long long>(fam::to_float(b) * 4 + fam::to_float(h) * 4 + fam::to_float(0.5f));
  acc += static_cast<long long>(fam::to_float(fam::from_float<fam::fp16>(3.0f)));
  return acc;
}

__global__ void probe_kernel(long long* out) { out[threadIdx.x] = probe(threadIdx.x); }

}  // namespace

int main() {
  // The kernel is compiled for every target architecture; taking its address keeps it.
  const void* kernel = reinterpret_cast<const void*>(&probe_kernel);
  if (kernel == nullptr) return 1;
  long long sum = 0;
  for (long long n = 0; n < 40; ++n) sum += probe(n);
  // The host value is what the CPU library computes; a GPU run would give the same.
  std::printf("shared headers under nvcc: ok (probe sum %lld)\n", sum);
  return sum > 0 ? 0 : 1;
}
