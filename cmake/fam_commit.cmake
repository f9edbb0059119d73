# Writes OUTPUT, a header defining FAM_BENCH_COMMIT as the commit of SOURCE_DIR ("-dirty" when
# the tree has changes, "unknown" outside git). Run at build time (cmake -P), so a rebuild
# without re-configuring still records the commit the binary was built from; the file is only
# rewritten when the text changes, so an unchanged commit rebuilds nothing.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE failed)
if(failed OR NOT commit)
  set(commit unknown)
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY ${SOURCE_DIR}
    RESULT_VARIABLE dirty ERROR_QUIET)
  if(dirty)
    string(APPEND commit -dirty)
  endif()
endif()
set(text "#define FAM_BENCH_COMMIT \"${commit}\"\n")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUTPUT} "${text}")
endif()
