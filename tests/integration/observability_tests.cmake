# Observability end to end: /metrics, /healthz, /readyz and propagated trace spans of
# the real daemon; /dashboard in headless Chromium (screenshot: <build>/dashboard.png); a real
# Prometheus scraping the daemon with deploy/prometheus/'s config.
if(TARGET clusterkv_test_daemon AND TARGET clusterkv_http)
  clusterkv_test(observability_integration_test integration observability_test.cc
    LIBS clusterkv_test_daemon clusterkv_storage clusterkv_core PkgConfig::CLUSTERKV_HTTPLIB
         nlohmann_json::nlohmann_json absl::strings)
  target_compile_definitions(observability_integration_test PRIVATE
    CLUSTERKV_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    CLUSTERKV_BUILD_DIR="${CMAKE_BINARY_DIR}")
endif()
