# Tenants and security against the real clusterkvd: the RPC x credentials matrix,
# peer credentials on the Unix socket, TCP tokens, quotas.
if(TARGET clusterkv_test_daemon)
  clusterkv_test(security_test integration security_test.cc
    LIBS clusterkv_test_daemon clusterkv_server_auth clusterkv_storage clusterkv_core)
endif()
