# CTest registration of the libFuzzer targets (label fuzz), included from tests/CMakeLists.txt.
# The targets need clang (libFuzzer) while the main build uses g++, so fuzz_build configures
# and builds the standalone project tests/fuzz/CMakeLists.txt with clang++ into
# <build>/fuzz; each fuzz_<target> test then runs one target over its seed corpus
# (tests/fuzz/corpus/<target>) for a bounded number of runs.
set(CLUSTERKV_FUZZ_RUNS 20000 CACHE STRING "Runs per fuzz target in the fuzz CTest label")
set(CLUSTERKV_FUZZ_SECONDS 30 CACHE STRING "Time bound (s) per fuzz target in the fuzz label")
find_program(CLUSTERKV_FUZZ_CLANGXX NAMES clang++ clang++-14)

if(NOT CLUSTERKV_FUZZ_CLANGXX)
  message(STATUS "clusterkv: no clang++; the fuzz label is empty")
  return()
endif()

set(_fuzz_src ${CMAKE_CURRENT_LIST_DIR})
set(_fuzz_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz)
add_test(NAME fuzz_build
  COMMAND ${CMAKE_COMMAND} -E env --unset=CXXFLAGS --unset=LDFLAGS
    sh -c "\"$0\" -S \"$1\" -B \"$2\" -G \"$3\" -DCMAKE_CXX_COMPILER=\"$4\" >/dev/null && \"$0\" --build \"$2\""
    ${CMAKE_COMMAND} ${_fuzz_src} ${_fuzz_bin} ${CMAKE_GENERATOR} ${CLUSTERKV_FUZZ_CLANGXX})
set_tests_properties(fuzz_build PROPERTIES LABELS fuzz FIXTURES_SETUP clusterkv_fuzzers
  TIMEOUT 900)

foreach(target fuzz_request_validation fuzz_ucx_wire fuzz_records fuzz_npy fuzz_gguf)
  add_test(NAME ${target}
    COMMAND ${_fuzz_src}/run_fuzzer.sh ${_fuzz_bin}/${target} ${_fuzz_src}/corpus/${target}
      ${_fuzz_bin}/work/${target} ${CLUSTERKV_FUZZ_RUNS} ${CLUSTERKV_FUZZ_SECONDS})
  set_tests_properties(${target} PROPERTIES LABELS fuzz FIXTURES_REQUIRED clusterkv_fuzzers
    TIMEOUT 300)
endforeach()
