// A CPU emulator for the CUDA adapter's kernels — a test tool, not a GPU.
//
// It lets the host compiler build include/fam/cuda/*.cuh unchanged (with FAM_CUDA_EMULATION) and
// run the very kernel source on the CPU: each CTA runs its threads as fibers (ucontext), one at
// a time, switching at __syncthreads() and at warp-collective operations; __shfl_xor_sync and
// mma.sync.m16n8k16 are done in software across the 32 fibers of a warp. The m16n8k16 fragment
// layouts below are written from the PTX ISA's tables ("Matrix Fragments for mma.m16n8k16 with
// floating point type"), independently of the kernel. The runtime calls the adapter and the
// tests make are defined here over host memory ("device" memory is host memory; every call is
// synchronous). Link no libcudart: this file defines the runtime symbols it needs. Include it
// in exactly one translation unit, before any fam/cuda header.
//
// What it cannot show: the real hardware's mma layout, timing, memory-model races between warps,
// alignment faults, register or shared-memory limits.
#ifndef FAM_TESTS_CUDA_EMULATOR_HPP_
#define FAM_TESTS_CUDA_EMULATOR_HPP_

#if !defined(FAM_CUDA_EMULATION)
#error "define FAM_CUDA_EMULATION to use the emulator"
#endif
#if defined(__CUDACC__)
#error "the emulator is for the host compiler, not nvcc"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <setjmp.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <vector>

#include "fam/types.hpp"

// ---- what nvcc would provide
#undef __shared__
#define __shared__ static  // CTAs run one at a time, so one copy serves the running CTA
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __forceinline__
#define __forceinline__ inline

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline void __syncthreads();
[[noreturn]] inline void __trap() {
  std::fprintf(stderr, "emulator: __trap()\n");
  std::abort();
}

namespace fam_emu {

/// Emulated device: compute capability and SM count the adapter sees.
struct device_config {
  int major = 8;
  int sms = 8;
  int smem_optin = 163 * 1024;
};
inline device_config& device() {
  static device_config d;
  return d;
}

struct fiber {
  ucontext_t ctx{};  // first entry only
  jmp_buf jb;        // every later switch: no signal-mask system calls
  bool started = false;
  std::vector<char> stack;
  bool done = false;
  int wait_kind = 0;  // 0 runnable, 1 block barrier, 2 warp barrier
  unsigned wait_gen = 0;
  dim3 tid;
};

struct machine {
  ucontext_t scheduler{};
  jmp_buf scheduler_jb;
  std::vector<fiber> fibers;
  int current = 0;
  int nthreads = 0;
  unsigned block_gen = 0, block_count = 0;
  unsigned warp_gen[32] = {}, warp_count[32] = {}, warp_size[32] = {};
  std::uint32_t slot[32][32] = {};  // shuffles
  std::uint32_t mma_a[32][32][4] = {}, mma_b[32][32][2] = {};
  std::vector<uint4> smem;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  long long launches = 0;
};
inline machine& m() {
  static machine s;
  return s;
}

inline int linear_tid() {
  return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

inline void wait(int kind, unsigned gen) {
  machine& s = m();
  fiber& f = s.fibers[s.current];
  f.wait_kind = kind;
  f.wait_gen = gen;
  if (_setjmp(f.jb) == 0) _longjmp(s.scheduler_jb, 1);
}

inline void sync_block() {
  machine& s = m();
  const unsigned gen = s.block_gen;
  if (++s.block_count == static_cast<unsigned>(s.nthreads)) {
    s.block_count = 0;
    ++s.block_gen;
    return;
  }
  wait(1, gen);
}

inline void sync_warp() {
  machine& s = m();
  const int w = linear_tid() / 32;
  const unsigned gen = s.warp_gen[w];
  if (++s.warp_count[w] == s.warp_size[w]) {
    s.warp_count[w] = 0;
    ++s.warp_gen[w];
    return;
  }
  wait(2, gen);
}

template <class T>
T* dynamic_smem() {
  return reinterpret_cast<T*>(m().smem.data());
}

inline void trampoline() {
  machine& s = m();
  s.body(s.body_arg);
  s.fibers[s.current].done = true;
  _longjmp(s.scheduler_jb, 1);  // never returns
}

/// Switches to fiber f until it waits or ends. Its own frame holds the jump target, so the
/// scheduler's locals are never live across the jump.
[[gnu::noinline]] inline void resume(fiber& f) {
  machine& s = m();
  if (_setjmp(s.scheduler_jb) == 0) {
    if (!f.started) {
      f.started = true;
      swapcontext(&s.scheduler, &f.ctx);
    } else {
      _longjmp(f.jb, 1);
    }
  }
}

/// Runs one CTA: every thread as a fiber, round robin, each until it waits or ends.
inline void run_block(dim3 block) {
  machine& s = m();
  s.nthreads = static_cast<int>(block.x * block.y * block.z);
  if (s.fibers.size() < static_cast<std::size_t>(s.nthreads)) s.fibers.resize(s.nthreads);
  s.block_gen = s.block_count = 0;
  for (int w = 0; w < 32; ++w) {
    s.warp_gen[w] = s.warp_count[w] = 0;
    const int left = s.nthreads - 32 * w;
    s.warp_size[w] = left >= 32 ? 32 : (left > 0 ? left : 0);
  }
  for (int i = 0; i < s.nthreads; ++i) {
    fiber& f = s.fibers[i];
    if (f.stack.empty()) f.stack.resize(256 * 1024);
    f.done = false;
    f.started = false;
    f.wait_kind = 0;
    f.tid = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &s.scheduler;
    makecontext(&f.ctx, trampoline, 0);
  }
  int live = s.nthreads;
  while (live > 0) {
    bool progress = false;
    for (int i = 0; i < s.nthreads; ++i) {
      fiber& f = s.fibers[i];
      if (f.done) continue;
      if (f.wait_kind == 1 && f.wait_gen == s.block_gen) continue;
      if (f.wait_kind == 2 && f.wait_gen == s.warp_gen[i / 32]) continue;
      f.wait_kind = 0;
      threadIdx = f.tid;
      s.current = i;
      resume(f);
      progress = true;
      if (f.done) --live;
    }
    if (!progress) {
      std::fprintf(stderr, "emulator: deadlock (a barrier that not every thread reaches)\n");
      std::abort();
    }
  }
}

template <class Tuple, class Kernel>
struct bound {
  Kernel kernel;
  Tuple args;
  static void call(void* self) {
    bound* b = static_cast<bound*>(self);
    std::apply(b->kernel, b->args);  // each thread gets its own copies of the parameters
  }
};

/// kernel<<<grid, block, smem, stream>>>(args...), run to completion before returning.
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t,
            A&&... args) {
  machine& s = m();
  ++s.launches;
  using B = bound<std::tuple<P...>, void (*)(P...)>;
  B b{kernel, std::tuple<P...>(static_cast<P>(args)...)};
  s.body = &B::call;
  s.body_arg = &b;
  s.smem.assign(smem / sizeof(uint4) + 1,
                uint4{0xdeadbeefu, 0xdeadbeefu, 0xdeadbeefu, 0xdeadbeefu});
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = dim3(x, y, z);
        run_block(block);
      }
}

inline float half_to_float(std::uint16_t h, bool is_bf16) {
  if (is_bf16) return __uint_as_float(static_cast<unsigned>(h) << 16);
  return __half2float(__ushort_as_half(h));
}

/// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32: D = A B + C for the warp.
/// Per the PTX ISA (groupID = lane >> 2, t = lane % 4; element i of a register pair list is the
/// low half first):
///   A (16x16): ai, i < 8: row = groupID + 8 * ((i / 2) % 2), col = 2t + (i % 2) + 8 * (i / 4)
///   B (16x8):  bi, i < 4: row = 2t + (i % 2) + 8 * (i / 2),   col = groupID
///   C/D (16x8): ci, i < 4: row = groupID + 8 * (i / 2),       col = 2t + (i % 2)
template <class T>
void mma_m16n8k16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  constexpr bool is_bf16 = std::is_same_v<T, fam::bf16>;
  machine& s = m();
  const int t = linear_tid(), w = t / 32, lane = t % 32;
  for (int r = 0; r < 4; ++r) s.mma_a[w][lane][r] = a[r];
  s.mma_b[w][lane][0] = b0;
  s.mma_b[w][lane][1] = b1;
  sync_warp();
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int group = l >> 2, tg = l % 4;
    for (int i = 0; i < 8; ++i) {
      const std::uint32_t reg = s.mma_a[w][l][i / 2];
      const auto h = static_cast<std::uint16_t>(i % 2 == 0 ? reg & 0xffffu : reg >> 16);
      A[group + 8 * ((i / 2) % 2)][2 * tg + (i % 2) + 8 * (i / 4)] = half_to_float(h, is_bf16);
    }
    for (int i = 0; i < 4; ++i) {
      const std::uint32_t reg = s.mma_b[w][l][i / 2];
      const auto h = static_cast<std::uint16_t>(i % 2 == 0 ? reg & 0xffffu : reg >> 16);
      B[2 * tg + (i % 2) + 8 * (i / 2)][group] = half_to_float(h, is_bf16);
    }
  }
  const int group = lane >> 2, tg = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = group + 8 * (i / 2), col = 2 * tg + (i % 2);
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc = std::fma(A[row][k], B[k][col], acc);
    c[i] = acc;
  }
  sync_warp();
}

}  // namespace fam_emu

inline void __syncthreads() { fam_emu::sync_block(); }

template <class T>
T __shfl_xor_sync(unsigned, T x, int lane_mask) {
  static_assert(sizeof(T) == 4, "emulator: 32-bit shuffles only");
  fam_emu::machine& s = fam_emu::m();
  const int t = fam_emu::linear_tid(), w = t / 32, lane = t % 32;
  std::memcpy(&s.slot[w][lane], &x, 4);
  fam_emu::sync_warp();
  T y;
  std::memcpy(&y, &s.slot[w][lane ^ lane_mask], 4);
  fam_emu::sync_warp();
  return y;
}

// ---- the CUDA runtime over host memory
namespace fam_emu {
inline cudaError_t& sticky() {
  static cudaError_t e = cudaSuccess;
  return e;
}
}  // namespace fam_emu

extern "C" {
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int) {
  const fam_emu::device_config& d = fam_emu::device();
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor:
      *value = d.major;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = d.sms;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = d.smem_optin;
      return cudaSuccess;
    default:
      return cudaErrorInvalidValue;
  }
}
cudaError_t cudaFuncSetAttribute(const void*, enum cudaFuncAttribute, int value) {
  return value <= fam_emu::device().smem_optin ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = fam_emu::sticky();
  fam_emu::sticky() = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return fam_emu::sticky(); }
cudaError_t cudaMalloc(void** p, size_t n) {
  *p = std::aligned_alloc(256, (n + 255) / 256 * 256 + 256);
  return *p != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t n) {
  std::memset(p, value, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t) {
  std::memset(p, value, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, enum cudaMemcpyKind) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, enum cudaMemcpyKind, cudaStream_t) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "error"; }
const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : "cudaError";
}
}

#endif  // FAM_TESTS_CUDA_EMULATOR_HPP_
