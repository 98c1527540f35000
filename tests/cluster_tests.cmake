# Cluster mode (issue 10): tests against a real etcd (Debian's /usr/bin/etcd, started by each
# test on free loopback ports; tests skip with a message when it is missing).
add_library(clusterkv_test_etcd STATIC ${PROJECT_SOURCE_DIR}/tests/testing/etcd_process.cc)
target_include_directories(clusterkv_test_etcd PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(clusterkv_test_etcd
  PUBLIC clusterkv_cluster absl::status absl::time
  PRIVATE absl::strings)
clusterkv_warnings(clusterkv_test_etcd)

# unit: the etcd client against a real etcd (leases, transactions, prefix ranges).
clusterkv_test(cluster_etcd_test unit ${CMAKE_CURRENT_LIST_DIR}/unit/cluster_etcd_test.cc
  LIBS clusterkv_test_etcd clusterkv_cluster)
# unit: placement (a pure function over fake loads), key layout, JSON records.
clusterkv_test(cluster_placement_test unit ${CMAKE_CURRENT_LIST_DIR}/unit/cluster_placement_test.cc
  LIBS clusterkv_cluster)
# unit: membership (leases, keep-alive, injected clock) and the directory's transactions.
clusterkv_test(cluster_membership_test unit
  ${CMAKE_CURRENT_LIST_DIR}/unit/cluster_membership_test.cc
  LIBS clusterkv_test_etcd clusterkv_cluster)

# integration and fault: real etcd + three real clusterkvd processes (TLS, peer token).
if(TARGET clusterkv_test_daemon AND TARGET clusterkv_client)
  clusterkv_test(cluster_test integration ${CMAKE_CURRENT_LIST_DIR}/integration/cluster_test.cc
    LIBS clusterkv_test_daemon clusterkv_test_etcd clusterkv_cluster clusterkv_client
         clusterkv_server_auth clusterkv_storage clusterkv_core PkgConfig::CLUSTERKV_HTTPLIB)
  clusterkv_test(cluster_fault_test fault ${CMAKE_CURRENT_LIST_DIR}/fault/cluster_fault_test.cc
    LIBS clusterkv_test_daemon clusterkv_test_etcd clusterkv_cluster clusterkv_storage
         clusterkv_core)
endif()
