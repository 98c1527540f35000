# Observability: registry + exposition golden strings, DaemonMetrics, traceparent,
# Tracer, OTLP/HTTP exporter against a local receiver, the HTTP endpoint, and the consistency
# of deploy/ (Grafana dashboard and alert rules reference only exported metrics).
if(TARGET clusterkv_http)
  clusterkv_test(observability_test unit observability_test.cc
    LIBS clusterkv_http clusterkv_metrics clusterkv_tracing PkgConfig::CLUSTERKV_HTTPLIB
         nlohmann_json::nlohmann_json absl::synchronization)
  target_compile_definitions(observability_test PRIVATE
    CLUSTERKV_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endif()
