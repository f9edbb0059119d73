# Runs every mode of the llama2 engine on the random stand-in model, small, and fails on the
# first non-zero exit. Invoked by ctest: cmake -DENGINE=<path to llama2> -P smoke_modes.cmake
set(runs
  "generate --random --steps 300 --attn fam --B 32 --M 1 --F 4"
  "generate --random --steps 600 --quiet --attn bswa --B 32 --M 1"
  "generate --random --steps 100 --attn full"
  "perplexity --random --tokens 1200 --B 32 --M 1 --F 4"
  "receptive --random --blocks 8")
foreach(run IN LISTS runs)
  message(STATUS "llama2 ${run}")
  separate_arguments(args UNIX_COMMAND "${run}")
  execute_process(COMMAND ${ENGINE} ${args} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "llama2 ${run} exited with ${rc}")
  endif()
endforeach()
