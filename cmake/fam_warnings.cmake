# Warnings-as-errors and sanitizer flags for the project's own targets (never for consumers).
function(fam_strict_target target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # g++ 12 emits false -Wmaybe-uninitialized from its own headers under AVX-512 builds
    # (-march=native); silence exactly that warning, nowhere else.
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
  if(FAM_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined
      -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all)
  endif()
endfunction()
