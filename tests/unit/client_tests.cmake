# client/ (libclusterkv): no daemon needed. Sequence logic runs over an in-memory fake
# transport; Connection over an in-process gRPC fake service.
clusterkv_test(client_retry_test unit client_retry_test.cc LIBS clusterkv_client)
clusterkv_test(client_connection_test unit client_connection_test.cc LIBS clusterkv_client)
clusterkv_test(client_memory_test unit client_memory_test.cc LIBS clusterkv_client clusterkv_storage)
clusterkv_test(client_sequence_test unit client_sequence_test.cc
  LIBS clusterkv_client clusterkv_storage)
clusterkv_test(client_sequence_selection_test unit client_sequence_selection_test.cc
  LIBS clusterkv_client clusterkv_storage)
clusterkv_test(client_test unit client_test.cc LIBS clusterkv_client clusterkv_storage)
clusterkv_test(client_prefetch_test unit client_prefetch_test.cc
  LIBS clusterkv_client clusterkv_storage)
clusterkv_test(client_batch_test unit client_batch_test.cc LIBS clusterkv_client clusterkv_storage)

# The C ABI compiled as C (links, and answers bad arguments without a daemon).
add_executable(client_c_api_test client_c_api_test.c)
set_source_files_properties(client_c_api_test.c PROPERTIES LANGUAGE C)
target_include_directories(client_c_api_test PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(client_c_api_test PRIVATE clusterkv_client)
set_target_properties(client_c_api_test PROPERTIES LINKER_LANGUAGE CXX C_STANDARD 11)
target_compile_options(client_c_api_test PRIVATE -Wall -Wextra -Werror)
add_test(NAME client_c_api_test COMMAND client_c_api_test)
set_tests_properties(client_c_api_test PROPERTIES LABELS unit TIMEOUT 60)
set_property(GLOBAL APPEND PROPERTY CLUSTERKV_TESTS_unit client_c_api_test)
