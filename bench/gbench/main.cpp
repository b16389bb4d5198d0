// dlkern_gbench: every CPU kernel family on Google Benchmark. Each benchmark checks its
// result against a reference before timing (an error row instead of a time on mismatch).
//
//   dlkern_gbench [--dlkern_threads=N] [--dlkern_isa=generic|avx2|avx512] [benchmark flags]
//   dlkern_gbench --benchmark_filter='gemm|softmax' --benchmark_format=json --benchmark_out=a.json
//   python bench/compare_gbench.py a.json b.json
//
// The thread count and ISA (defaults: OMP_NUM_THREADS or the core count, and DLKERN_ISA
// or the best the CPU runs) are recorded in the JSON context as dlkern_threads/dlkern_isa.
#include <cstring>
#include <string>
#include <vector>

#include "common/cpu_features.h"
#include "common/runtime.h"
#include "gbench_util.h"

int main(int argc, char** argv) {
  // Our two flags are taken out before Google Benchmark sees the rest (it rejects
  // flags it does not know).
  std::vector<char*> rest;
  try {
    for (int i = 0; i < argc; ++i) {
      const char* a = argv[i];
      if (std::strncmp(a, "--dlkern_threads=", 17) == 0)
        dlkern::set_num_threads(std::stoi(a + 17));
      else if (std::strncmp(a, "--dlkern_isa=", 13) == 0)
        dlkern::set_active_isa(dlkern::parse_isa(a + 13));
      else
        rest.push_back(argv[i]);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dlkern_gbench: %s\n", e.what());
    return 2;
  }
  int rest_argc = int(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  benchmark::AddCustomContext("dlkern_threads", std::to_string(dlkern::get_num_threads()));
  benchmark::AddCustomContext("dlkern_isa", dlkern::isa_name(dlkern::active_isa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (gbench::any_failed()) {
    std::fprintf(stderr, "dlkern_gbench: a kernel did not match its reference (see the ERROR rows)\n");
    return 1;
  }
  return 0;
}
