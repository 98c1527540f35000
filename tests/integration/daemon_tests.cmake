# End-to-end tests of the real clusterkvd process: a daemon per test on a Unix socket in a
# scratch directory, driven by the generated gRPC stub (C++), by Python's grpcio, and by the
# clusterkv admin CLI.
if(TARGET clusterkvd AND TARGET clusterkv_admin)
  add_library(clusterkv_test_daemon STATIC ${PROJECT_SOURCE_DIR}/tests/testing/daemon_process.cc)
  target_include_directories(clusterkv_test_daemon PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(clusterkv_test_daemon
    PUBLIC clusterkv_proto gRPC::grpc++ absl::status absl::statusor absl::synchronization
           absl::time
    PRIVATE absl::strings Threads::Threads)
  target_compile_definitions(clusterkv_test_daemon PRIVATE
    CLUSTERKV_DAEMON_BIN="$<TARGET_FILE:clusterkvd>")
  add_dependencies(clusterkv_test_daemon clusterkvd)
  clusterkv_warnings(clusterkv_test_daemon)

  clusterkv_test(daemon_test integration
    daemon_test.cc daemon_validation_test.cc daemon_lifecycle_test.cc daemon_limits_test.cc
    LIBS clusterkv_test_daemon clusterkv_admin clusterkv_client clusterkv_storage clusterkv_gpu
         clusterkv_core)

  # Resumable sessions and shared documents through libclusterkv.
  clusterkv_test(session_test integration session_test.cc
    LIBS clusterkv_test_daemon clusterkv_client clusterkv_core)

  # The protocol from Python: stubs generated at test time by grpc_tools.protoc.
  clusterkv_test(daemon_python_client_test integration python_client/python_client_test.cc
    LIBS clusterkv_test_daemon)
  target_compile_definitions(daemon_python_client_test PRIVATE
    CLUSTERKV_PROTO_ROOT="${PROJECT_SOURCE_DIR}/proto"
    CLUSTERKV_PYTHON_CLIENT="${CMAKE_CURRENT_SOURCE_DIR}/python_client/client.py")

  clusterkv_test(daemon_cli_test integration daemon_cli_test.cc
    LIBS clusterkv_test_daemon clusterkv_admin clusterkv_storage clusterkv_core)
  target_compile_definitions(daemon_cli_test PRIVATE
    CLUSTERKV_CLI_BIN="$<TARGET_FILE:clusterkv>")
  add_dependencies(daemon_cli_test clusterkv)
endif()
