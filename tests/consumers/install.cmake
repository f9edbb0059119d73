# consumers/install: `cmake --install BUILD_DIR --prefix PREFIX` into a fresh PREFIX, then checks
# what the package holds: the headers, the CMake config and version files, fam.pc, the simd
# export exactly when EXPECT_SIMD, and nothing else (no binaries: the package is header-only).
# cmake -DBUILD_DIR=... -DPREFIX=... -DEXPECT_SIMD=0|1 -P install.cmake
unset(ENV{DESTDIR})
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}):\n${out}")
endif()

set(expected include/fam/fam.hpp include/fam/version.hpp include/fam/support.hpp
  share/cmake/fam/famConfig.cmake share/cmake/fam/famConfigVersion.cmake
  share/cmake/fam/famTargets.cmake share/pkgconfig/fam.pc)
if(EXPECT_SIMD)
  list(APPEND expected share/cmake/fam/famSimdTargets.cmake)
elseif(EXISTS "${PREFIX}/share/cmake/fam/famSimdTargets.cmake")
  message(FATAL_ERROR "famSimdTargets.cmake installed although fam::simd does not exist")
endif()
foreach(f ${expected})
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "the package lacks ${f}")
  endif()
endforeach()

file(GLOB_RECURSE installed RELATIVE "${PREFIX}" "${PREFIX}/*")
list(LENGTH installed count)
foreach(f ${installed})
  if(NOT f MATCHES "^include/fam/" AND NOT f MATCHES "^share/(cmake/fam|pkgconfig|doc/fam)/")
    message(FATAL_ERROR "unexpected file in the package: ${f}")
  endif()
endforeach()
message(STATUS "installed ${count} files into ${PREFIX}")
