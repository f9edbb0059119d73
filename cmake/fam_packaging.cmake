# Install rules of the header-only package (included from the top-level CMakeLists.txt when
# FAM_INSTALL is ON). What a `cmake --install` puts under the prefix:
#   include/fam/...                       the headers
#   share/cmake/fam/famConfig.cmake       find_package(fam CONFIG): fam::fam, and fam::simd
#   share/cmake/fam/famConfigVersion.cmake  (SameMajorVersion, ARCH_INDEPENDENT)
#   share/cmake/fam/famTargets.cmake, famSimdTargets.cmake (the latter only when xsimd was found)
#   share/pkgconfig/fam.pc                pkg-config --cflags fam (relocatable: ${pcfiledir})
# Nothing architecture-specific is installed (no binaries: fam-run is a build-tree tool), hence
# share/ rather than lib/. No compile flags are exported: fam::fam carries only its include
# directory and the cxx_std_17 requirement.
include(CMakePackageConfigHelpers)

set(FAM_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/fam" CACHE STRING
  "Where famConfig.cmake is installed (relative to the prefix)")
set(FAM_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig" CACHE STRING
  "Where fam.pc is installed (relative to the prefix)")

install(DIRECTORY include/fam DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# fam::fam
install(TARGETS fam EXPORT famTargets)
install(EXPORT famTargets NAMESPACE fam:: DESTINATION ${FAM_INSTALL_CMAKEDIR})

# fam::simd, in its own export set so that fam::fam never depends on xsimd being installed
# where the package is used. famConfig.cmake loads it when xsimd is found there (and requires
# xsimd through find_dependency only when the `simd` component is required). Debian's xsimd 8
# target links a target named `xtl`, so xtl is looked up first when the xsimd found here does so.
set(FAM_EXPORT_SIMD 0)
set(FAM_SIMD_NEEDS_XTL 0)
if(TARGET fam_simd)
  set(FAM_EXPORT_SIMD 1)
  get_target_property(fam_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(fam_xsimd_links AND "xtl" IN_LIST fam_xsimd_links)
    set(FAM_SIMD_NEEDS_XTL 1)
  endif()
  install(TARGETS fam_simd EXPORT famSimdTargets)
  install(EXPORT famSimdTargets NAMESPACE fam:: DESTINATION ${FAM_INSTALL_CMAKEDIR})
endif()

configure_package_config_file(cmake/famConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/famConfig.cmake"
  INSTALL_DESTINATION ${FAM_INSTALL_CMAKEDIR}
  NO_SET_AND_CHECK_MACRO)
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/famConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/famConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/famConfigVersion.cmake"
  DESTINATION ${FAM_INSTALL_CMAKEDIR})

# fam.pc: the prefix is found from the .pc file's own directory, so the package can be installed
# with any --prefix (or DESTDIR) and moved afterwards.
if(IS_ABSOLUTE "${FAM_INSTALL_PKGCONFIGDIR}")
  set(FAM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH fam_pc_up "/prefix/${FAM_INSTALL_PKGCONFIGDIR}" "/prefix")
  string(REGEX REPLACE "/$" "" fam_pc_up "${fam_pc_up}")
  set(FAM_PC_PREFIX "\${pcfiledir}/${fam_pc_up}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(FAM_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(FAM_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/fam.pc.in "${CMAKE_CURRENT_BINARY_DIR}/fam.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/fam.pc" DESTINATION ${FAM_INSTALL_PKGCONFIGDIR})
