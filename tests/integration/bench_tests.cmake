# Smoke tests of tools/clusterkv_bench: every subcommand runs at --quick sizes and writes JSON
# whose rows carry the required fields (structure only, never timings); --help exits 0 and an
# unknown subcommand exits 2. fetch, e2e and soak start the build's clusterkvd (the default of
# --daemon) and, when /usr/bin/ucx_perftest exists, fetch runs it on loopback too.
if(TARGET clusterkv_bench)
  set(_bench_check ${CMAKE_CURRENT_SOURCE_DIR}/bench_json_check.py)
  foreach(_sub kmeans select decode storage fetch e2e batch soak heat)
    add_test(NAME bench_${_sub}_quick_json
      COMMAND /usr/bin/python3 ${_bench_check} run $<TARGET_FILE:clusterkv_bench> ${_sub}
              ${CMAKE_CURRENT_BINARY_DIR}/bench_${_sub}_quick.json)
    set_tests_properties(bench_${_sub}_quick_json PROPERTIES LABELS integration TIMEOUT 300)
  endforeach()
  add_test(NAME bench_cli
    COMMAND /usr/bin/python3 ${_bench_check} cli $<TARGET_FILE:clusterkv_bench>)
  set_tests_properties(bench_cli PROPERTIES LABELS integration TIMEOUT 60)
  # `cmake --build <dir> --target integration_tests` builds what these tests run.
  set_property(GLOBAL APPEND PROPERTY CLUSTERKV_TESTS_integration clusterkv_bench clusterkvd)
endif()
