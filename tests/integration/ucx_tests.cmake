# UCX data plane: the wire format and the region allocator (unit), recalls (single and
# batched) through a real clusterkvd over shared memory and TCP (integration), and clients /
# daemons that vanish mid-stream (fault). Needs the daemon harness of daemon_tests.cmake when it is there.
if(CLUSTERKV_UCX AND TARGET clusterkvd)
  clusterkv_test(ucx_wire_test unit ucx_wire_test.cc
    LIBS clusterkv_client clusterkv_ucx clusterkv_proto clusterkv_core)
  clusterkv_test(ucx_progress_test unit ucx_progress_test.cc LIBS clusterkv_ucx clusterkv_core)
  # UCX 1.13's known problems (D17, D19) under the UCX this build links, per version (D78).
  clusterkv_test(ucx_known_problems_test integration ucx_known_problems_test.cc
    LIBS clusterkv_ucx absl::strings)

  if(NOT TARGET clusterkv_test_daemon)
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
  endif()

  # The fetch loop a fault test runs as a child process and kills with SIGKILL.
  add_executable(ucx_fetch_storm ucx_fetch_storm.cc)
  target_link_libraries(ucx_fetch_storm PRIVATE clusterkv_client clusterkv_storage)
  target_include_directories(ucx_fetch_storm PRIVATE ${PROJECT_SOURCE_DIR})
  clusterkv_warnings(ucx_fetch_storm)

  set(_ucx_test_libs clusterkv_test_daemon clusterkv_client clusterkv_ucx clusterkv_storage
      clusterkv_gpu clusterkv_proto clusterkv_core)
  clusterkv_test(ucx_data_plane_test integration ucx_data_plane_test.cc LIBS ${_ucx_test_libs})
  # Batched recalls (FetchBatchInto); counts requests through the daemon's /metrics.
  if(TARGET clusterkv_http)
    clusterkv_test(ucx_batch_test integration ucx_batch_test.cc
      LIBS ${_ucx_test_libs} PkgConfig::CLUSTERKV_HTTPLIB absl::strings)
  endif()
  clusterkv_test(ucx_fault_test fault ucx_fault_test.cc LIBS ${_ucx_test_libs})
  target_compile_definitions(ucx_fault_test PRIVATE
    CLUSTERKV_UCX_FETCH_STORM="$<TARGET_FILE:ucx_fetch_storm>")
  add_dependencies(ucx_fault_test ucx_fetch_storm)
endif()
