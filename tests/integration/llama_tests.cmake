# End-to-end tests of tools/clusterkv_llama against a real clusterkvd (tests/testing/
# daemon_process.h): exact agreement with full attention when the budget covers every token,
# a small budget's bounded report, and the tool binary (writing GGUF/safetensors models,
# loading them, JSON report, its own daemon).
if(TARGET clusterkv_llama_lib AND TARGET clusterkv_llama AND TARGET clusterkv_test_daemon)
  clusterkv_test(llama_engine_test integration llama_engine_test.cc
    LIBS clusterkv_llama_lib clusterkv_test_daemon nlohmann_json::nlohmann_json)
  target_compile_definitions(llama_engine_test PRIVATE
    CLUSTERKV_LLAMA_BIN="$<TARGET_FILE:clusterkv_llama>"
    CLUSTERKV_DAEMON_BIN="$<TARGET_FILE:clusterkvd>")
  add_dependencies(llama_engine_test clusterkv_llama)
endif()

# The real models (deploy/models.sh fetches them) against golden logits from an independent
# implementation (tools/clusterkv_llama/reference/reference_logits.py).
if(TARGET clusterkv_llama_lib)
  clusterkv_test(llama_reference_test integration llama_reference_test.cc
    LIBS clusterkv_llama_lib nlohmann_json::nlohmann_json)
  target_compile_definitions(llama_reference_test PRIVATE
    CLUSTERKV_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
endif()

# The real models through a real clusterkvd, and the binary's answers to bad input.
if(TARGET clusterkv_llama_lib AND TARGET clusterkv_llama AND TARGET clusterkv_test_daemon)
  clusterkv_test(llama_real_model_test integration llama_real_model_test.cc
    LIBS clusterkv_llama_lib clusterkv_test_daemon)
  target_compile_definitions(llama_real_model_test PRIVATE
    CLUSTERKV_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data"
    CLUSTERKV_LLAMA_BIN="$<TARGET_FILE:clusterkv_llama>"
    CLUSTERKV_DAEMON_BIN="$<TARGET_FILE:clusterkvd>")
  add_dependencies(llama_real_model_test clusterkv_llama)
endif()
