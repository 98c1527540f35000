# Bounded soak of a real clusterkvd under concurrent clients: no errors beyond the
# expected ones and no daemon RSS growth after a warm-up. Figures: `clusterkv_bench soak`.
if(TARGET clusterkv_test_daemon)
  clusterkv_test(soak_test integration ${CMAKE_CURRENT_LIST_DIR}/soak_test.cc
    LIBS clusterkv_test_daemon clusterkv_storage clusterkv_core)
endif()
