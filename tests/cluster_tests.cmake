# Cluster mode: tests against a real etcd (Debian's /usr/bin/etcd, started by each
# test on free loopback ports by server/cluster/testing/etcd_process.h; tests skip with a
# message when it is missing).

# unit: the etcd client against a real etcd (leases, transactions, prefix ranges).
clusterkv_test(cluster_etcd_test unit ${CMAKE_CURRENT_LIST_DIR}/unit/cluster_etcd_test.cc
  LIBS clusterkv_cluster_testing clusterkv_cluster)
# unit: placement (a pure function over fake loads), key layout, JSON records.
clusterkv_test(cluster_placement_test unit ${CMAKE_CURRENT_LIST_DIR}/unit/cluster_placement_test.cc
  LIBS clusterkv_cluster)
# unit: membership (leases, keep-alive, injected clock) and the directory's transactions.
clusterkv_test(cluster_membership_test unit
  ${CMAKE_CURRENT_LIST_DIR}/unit/cluster_membership_test.cc
  LIBS clusterkv_cluster_testing clusterkv_cluster)

# integration and fault: real etcd + three real clusterkvd processes (TLS, peer token).
if(TARGET clusterkv_test_daemon AND TARGET clusterkv_client)
  clusterkv_test(cluster_test integration ${CMAKE_CURRENT_LIST_DIR}/integration/cluster_test.cc
    LIBS clusterkv_test_daemon clusterkv_cluster_testing clusterkv_cluster clusterkv_client
         clusterkv_server_auth clusterkv_storage clusterkv_core PkgConfig::CLUSTERKV_HTTPLIB)
  if(CLUSTERKV_UCX)  # the UCX data-plane client of a non-owning node
    target_link_libraries(cluster_test PRIVATE clusterkv_ucx clusterkv_gpu clusterkv_proto)
    target_compile_definitions(cluster_test PRIVATE CLUSTERKV_WITH_UCX=1)
  endif()
  if(CLUSTERKV_UCX)  # the pulling side of daemon-to-daemon UCX, against one real daemon
    clusterkv_test(peer_data_plane_test integration
      ${CMAKE_CURRENT_LIST_DIR}/integration/peer_data_plane_test.cc
      LIBS clusterkv_test_daemon clusterkv_cluster clusterkv_client clusterkv_ucx clusterkv_storage
           clusterkv_gpu clusterkv_proto clusterkv_core)
  endif()
  clusterkv_test(cluster_fault_test fault ${CMAKE_CURRENT_LIST_DIR}/fault/cluster_fault_test.cc
    LIBS clusterkv_test_daemon clusterkv_cluster_testing clusterkv_cluster clusterkv_storage
         clusterkv_core PkgConfig::CLUSTERKV_HTTPLIB)
  if(CLUSTERKV_UCX)  # daemons pulling over UCX when an owner dies
    target_compile_definitions(cluster_fault_test PRIVATE CLUSTERKV_WITH_UCX=1)
  endif()
endif()

# `clusterkv_bench remote --quick --json`: structure of the report (never timings).
if(TARGET clusterkv_bench)
  add_test(NAME bench_remote_quick_json
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/integration/bench_json_check.py run
            $<TARGET_FILE:clusterkv_bench> remote
            ${CMAKE_CURRENT_BINARY_DIR}/bench_remote_quick.json)
  set_tests_properties(bench_remote_quick_json PROPERTIES LABELS integration TIMEOUT 300)
  set_property(GLOBAL APPEND PROPERTY CLUSTERKV_TESTS_integration clusterkv_bench clusterkvd)
endif()
