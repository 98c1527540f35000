# Faults of the real clusterkvd process: SIGKILL during a write-through put storm, clients that
# vanish mid-stream (RSS bound), deadlines and stalled readers.
if(TARGET clusterkv_test_daemon)
  clusterkv_test(daemon_fault_test fault ${CMAKE_CURRENT_LIST_DIR}/daemon_fault_test.cc
    LIBS clusterkv_test_daemon clusterkv_storage clusterkv_core)
endif()
