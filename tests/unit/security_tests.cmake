# Tenants and security: credential file parsers, digests, the authenticator, quotas,
# and the sequence TTL with a fake clock.
if(TARGET clusterkv_server_auth)
  clusterkv_test(security_credentials_test unit security_credentials_test.cc
    LIBS clusterkv_server_auth)
  clusterkv_test(security_ttl_test unit security_ttl_test.cc
    LIBS clusterkv_server clusterkv_storage)
endif()
