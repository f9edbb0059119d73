// fam: long-context attention (BSWA and TransformerFAM, arXiv:2404.09173).
// Version macros; CMake reads them from this file.
#ifndef FAM_VERSION_HPP_
#define FAM_VERSION_HPP_

#define FAM_VERSION_MAJOR 0
#define FAM_VERSION_MINOR 1
#define FAM_VERSION_PATCH 0

#define FAM_VERSION (FAM_VERSION_MAJOR * 10000 + FAM_VERSION_MINOR * 100 + FAM_VERSION_PATCH)

// Every public name lives in fam::FAM_ABI_NAMESPACE (an inline namespace), so two
// incompatible versions linked into one program cannot silently mix their types.
#define FAM_ABI_NAMESPACE v0

#endif  // FAM_VERSION_HPP_
