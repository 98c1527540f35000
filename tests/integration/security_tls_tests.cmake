# TLS on the daemon's TCP port (client::Connection tls_root_cert_file, clusterkv
# --tls_root_cert) with a self-signed certificate made at test time by the openssl CLI.
if(TARGET clusterkv_test_daemon AND TARGET clusterkv_client AND TARGET clusterkv)
  clusterkv_test(security_tls_test integration ${CMAKE_CURRENT_LIST_DIR}/security_tls_test.cc
    LIBS clusterkv_test_daemon clusterkv_client clusterkv_server_auth clusterkv_storage
         clusterkv_core)
  target_compile_definitions(security_tls_test PRIVATE
    CLUSTERKV_CLI_BIN="$<TARGET_FILE:clusterkv>")
  add_dependencies(security_tls_test clusterkv)
endif()
