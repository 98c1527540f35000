# `cmake --install` into a temporary prefix, then an external project (external_consumer/)
# built with find_package(clusterkv) and with pkg-config, run against the installed clusterkvd
# Needs the installed components built: clusterkvd, libclusterkv.so and, when it is
# enabled, the Python module.
# Not in sanitizer builds: the consumers, built without the sanitizer, could not load the
# instrumented library (the ASan runtime must come first).
string(TOLOWER "${CLUSTERKV_SANITIZE}" _sanitizer)
if(TARGET clusterkv_client_shared AND TARGET clusterkvd AND _sanitizer MATCHES "^(off|)$")
  find_program(CLUSTERKV_PKG_CONFIG pkg-config)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(CLUSTERKV_PKG_CONFIG AND Python3_Interpreter_FOUND)
    set(_python ${Python3_EXECUTABLE})
    if(CLUSTERKV_PYTHON_EXECUTABLE)
      set(_python ${CLUSTERKV_PYTHON_EXECUTABLE})
    endif()
    set(_args --build_dir=${PROJECT_BINARY_DIR} --source_dir=${PROJECT_SOURCE_DIR}
              --cmake=${CMAKE_COMMAND} --cxx=${CMAKE_CXX_COMPILER} --cc=${CMAKE_C_COMPILER})
    set(_deps clusterkv_client_shared clusterkvd)
    if(TARGET clusterkv_python)
      list(APPEND _args --python_module)
      list(APPEND _deps clusterkv_python)
    endif()
    add_test(NAME packaging_install_and_consume
      COMMAND ${_python} ${CMAKE_CURRENT_SOURCE_DIR}/packaging_test.py ${_args})
    set_tests_properties(packaging_install_and_consume PROPERTIES
      LABELS integration
      ENVIRONMENT "PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR};PYTHONDONTWRITEBYTECODE=1"
      TIMEOUT 900)
    set_property(GLOBAL APPEND PROPERTY CLUSTERKV_TESTS_integration ${_deps})
  else()
    message(STATUS "clusterkv: packaging test skipped (needs pkg-config and python3)")
  endif()
endif()
