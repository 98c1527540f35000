// clusterkv_bench: see tools/clusterkv_bench/bench.h and `clusterkv_bench --help`.
#include "tools/clusterkv_bench/bench.h"

int main(int argc, char** argv) { return clusterkv::bench::BenchToolMain(argc, argv); }
