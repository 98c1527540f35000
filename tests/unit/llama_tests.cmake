# Unit tests of tools/clusterkv_llama's library: the dense ops and attention against naive
# references, both checkpoint formats (round trips, metadata, malformed files) and the forward
# pass (GGUF and safetensors copies agree, prefill and decode agree). No daemon.
if(TARGET clusterkv_llama_lib)
  clusterkv_test(llama_ops_test unit llama_ops_test.cc LIBS clusterkv_llama_lib)
  clusterkv_test(llama_format_test unit llama_format_test.cc LIBS clusterkv_llama_lib)
  clusterkv_test(llama_model_test unit llama_model_test.cc LIBS clusterkv_llama_lib)
  clusterkv_test(llama_quant_test unit llama_quant_test.cc LIBS clusterkv_llama_lib)
  target_compile_definitions(llama_quant_test PRIVATE
    CLUSTERKV_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
  clusterkv_test(llama_gemma_test unit llama_gemma_test.cc LIBS clusterkv_llama_lib)
  clusterkv_test(llama_eval_test unit llama_eval_test.cc LIBS clusterkv_llama_lib)
  clusterkv_test(llama_tokenizer_test unit llama_tokenizer_test.cc LIBS clusterkv_llama_lib)
  target_compile_definitions(llama_tokenizer_test PRIVATE
    CLUSTERKV_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
endif()
