# End-to-end tests of tools/clusterkv_eval: the quality comparison on synthetic data, the .npy
# path on files written by numpy, and the binary's command line.
if(TARGET clusterkv_eval_lib AND TARGET clusterkv_eval)
  find_package(nlohmann_json REQUIRED)
  clusterkv_test(eval_test integration eval_test.cc
    LIBS clusterkv_eval_lib nlohmann_json::nlohmann_json)
  target_compile_definitions(eval_test PRIVATE
    CLUSTERKV_EVAL_BIN="$<TARGET_FILE:clusterkv_eval>")
  add_dependencies(eval_test clusterkv_eval)
endif()
