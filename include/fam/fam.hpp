// fam: block sliding window attention (BSWA) and Feedback Attention Memory (FAM),
// after Hwang et al., "TransformerFAM: Feedback attention is working memory", arXiv:2404.09173.
// The umbrella header of the CPU library; it needs only the C++17 standard library.
// Opt-in extras: fam/eigen.hpp (Eigen::Map interop). The CUDA adapter is never included here.
#ifndef FAM_FAM_HPP_
#define FAM_FAM_HPP_

#include "attention.hpp"
#include "backend/backend.hpp"
#include "backend/reference.hpp"
#include "config.hpp"
#include "kv_ring.hpp"
#include "layer_state.hpp"
#include "mask.hpp"
#include "naive.hpp"
#include "parallel.hpp"
#include "state_io.hpp"
#include "status.hpp"
#include "stream.hpp"
#include "support.hpp"
#include "types.hpp"
#include "version.hpp"
#include "view.hpp"

#endif  // FAM_FAM_HPP_
