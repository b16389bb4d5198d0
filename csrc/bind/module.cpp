// dlkern._C: the CPU extension module. Each op family registers itself from its own
// binding file (DLKERN_REGISTER_BINDINGS); this file holds only the runtime controls
// and build facts.
#include <omp.h>

#include "bind/common.h"
#include "common/cpu_features.h"
#include "common/runtime.h"
#include "dlkern_build_config.h"

namespace {

namespace py = pybind11;
using dlkern::Isa;

py::dict build_info() {
  py::dict info;
  info["version"] = DLKERN_VERSION;
  info["compiler"] = DLKERN_CXX_COMPILER;
  info["build_type"] = DLKERN_BUILD_TYPE;
  info["cxx_flags"] = DLKERN_CXX_FLAGS;
  info["sanitizers"] = DLKERN_SANITIZERS;  // "" unless built with -DDLKERN_SANITIZE=...
  py::list compiled, supported;
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::generic}) {
    if (dlkern::isa_compiled(isa)) compiled.append(dlkern::isa_name(isa));
    if (dlkern::isa_supported(isa)) supported.append(dlkern::isa_name(isa));
  }
  info["isa_compiled"] = compiled;
  info["isa_supported"] = supported;
  info["isa_best"] = dlkern::isa_name(dlkern::best_isa());
  info["isa_active"] = dlkern::isa_name(dlkern::active_isa());
  info["openmp"] = DLKERN_OPENMP_VERSION;
  info["num_threads"] = dlkern::get_num_threads();
  info["omp_max_threads"] = omp_get_max_threads();
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "dlkern CPU kernels";
  // Resolve DLKERN_ISA now, so a bad value fails the import with a clear message
  // rather than the first kernel call.
  dlkern::active_isa();

  m.def("build_info", &build_info, "Version, compiler, flags, ISA paths compiled and chosen, OpenMP.");
  m.def("get_num_threads", &dlkern::get_num_threads, "Threads the kernels use.");
  m.def("set_num_threads", &dlkern::set_num_threads, py::arg("n"),
        "Set the threads the kernels use (n >= 1).");
  m.def("parallel_decisions", &dlkern::parallel_decisions,
        "How many kernel calls so far chose more than one thread (a test hook).");
  m.def("set_min_work_scale", &dlkern::set_min_work_scale, py::arg("scale"),
        "Scale the per-thread work thresholds (tests: 0 splits even tiny inputs).");
  m.def("get_min_work_scale", &dlkern::get_min_work_scale);
  m.def("contention_info", [] {
    const dlkern::ContentionInfo c = dlkern::contention_info();
    py::dict d;
    d["adaptive"] = c.enabled;
    d["contended"] = c.contended;
    d["others_busy_cpus"] = c.others_busy_cpus;
    return d;
  }, "Whether threads_for adapts to CPUs held by other processes, and what it last measured.");
  m.def("get_isa", [] { return std::string(dlkern::isa_name(dlkern::active_isa())); },
        "The SIMD path in use: 'avx512', 'avx2' or 'generic'.");
  m.def("set_isa", [](const std::string& name) { dlkern::set_active_isa(dlkern::parse_isa(name)); },
        py::arg("name"),
        "Force a SIMD path ('avx512', 'avx2', 'generic'); ValueError if unknown, "
        "RuntimeError if this CPU cannot run it.");
  m.def("supported_isas", [] {
    py::list out;
    for (Isa isa : {Isa::avx512, Isa::avx2, Isa::generic})
      if (dlkern::isa_supported(isa)) out.append(dlkern::isa_name(isa));
    return out;
  }, "SIMD paths this CPU can run, fastest first.");

  for (const auto& [family, register_family] : dlkern::bind::registered_bindings()) {
    (void)family;
    register_family(m);
  }
  dlkern::bind::export_kernels(m, true);
}
