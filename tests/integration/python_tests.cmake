# The clusterkv Python module against a real clusterkvd (client/python): unit-style
# checks in python_module_test.py and the example script run as its own test. Registered only
# when the module is built (CLUSTERKV_PYTHON).
if(TARGET clusterkv_python AND TARGET clusterkvd)
  # No __pycache__ in the source tree.
  set(_env "PYTHONPATH=${PROJECT_BINARY_DIR}/python:${CMAKE_CURRENT_SOURCE_DIR}"
                  "PYTHONDONTWRITEBYTECODE=1")
  set(_example ${PROJECT_SOURCE_DIR}/client/python/examples/select_and_fetch.py)

  add_test(NAME python_module_test
    COMMAND ${CLUSTERKV_PYTHON_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/python_module_test.py
            --daemon=$<TARGET_FILE:clusterkvd> --example=${_example})
  add_test(NAME python_example_select_and_fetch
    COMMAND ${CLUSTERKV_PYTHON_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/python_daemon.py
            --daemon=$<TARGET_FILE:clusterkvd> --
            ${CLUSTERKV_PYTHON_EXECUTABLE} ${_example} --target={target} --tenant=example)
  set_tests_properties(python_module_test python_example_select_and_fetch PROPERTIES
    LABELS integration
    ENVIRONMENT "${_env}"
    TIMEOUT 600)
  # `cmake --build <dir> --target integration_tests` builds what these tests run.
  set_property(GLOBAL APPEND PROPERTY CLUSTERKV_TESTS_integration clusterkv_python clusterkvd)
endif()
