// The CUDA adapter's tests on the CPU emulator: the kernel source of include/fam/cuda/ compiled
// by the host compiler and run with one fiber per CUDA thread (emulator/cuda_emulator.hpp).
// Checks the algorithm, indexing, masking, splits and the protocol where no GPU exists; it is
// not a GPU run (see docs/cuda.md).
#ifndef FAM_CUDA_EMULATION
#define FAM_CUDA_EMULATION 1
#endif
#include "emulator/cuda_emulator.hpp"
// after the emulator:
#include "test_cuda.cu"
