// The fused optimizer steps' Python signatures, written once for both extension modules
// (bind/optim.cpp on NumPy arrays, bind/cuda_optim.cpp on DeviceArrays), so the two
// cannot drift apart: the arrays positional, every option keyword-only and required.
#pragma once
#include "bind/common.h"

namespace dlkern::bind {

template <class Adam, class Sgd>
void def_optim_steps(py::module_& m, Adam adam_step, Sgd sgd_step) {
  m.def("adam_step", adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("max_exp_avg_sq"), py::kw_only(), py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled_weight_decay"), py::arg("amsgrad"),
        py::arg("maximize"),
        "One Adam/AdamW step in place (dlkern.optim.Adam's rule), one fused pass over contiguous arrays.");
  m.def("sgd_step", sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::kw_only(),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"), py::arg("first"),
        "One SGD step in place (dlkern.optim.SGD's rule); first=True sets the momentum buffer to the gradient.");
}

}  // namespace dlkern::bind
