// Bindings for the recurrent cells' pointwise steps (cpu/rnn.h). Every input is a 2-D
// float32/float64 array of one dtype; one of any strides is copied once, C-contiguous,
// here (the kernels read rows at fixed offsets). The outputs are new C-contiguous arrays.
// The shape checks live here, once: the Python layers above call these functions.
#include "bind/common.h"
#include "bind/rnn_operands.h"
#include "cpu/rnn.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

py::tuple lstm_forward(const py::object& gates_obj, const py::object& c_prev_obj) {
  Operands ops("lstm_cell_forward");
  py::array gates = ops.take(gates_obj, "gates");
  const int64_t B = gates.shape(0), H = ops.hidden(gates, "gates", 4, "i, f, g, o");
  py::array c_prev = ops.take(c_prev_obj, "c_prev");
  ops.expect(c_prev, "c_prev", B, H, "(batch, hidden_size) from gates");
  py::array h = new_like(gates, B, H), c = new_like(gates, B, H), act = new_like(gates, B, 4 * H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::lstm_cell_forward(in<T>(gates), in<T>(c_prev), out<T>(h), out<T>(c), out<T>(act), B, H);
  });
  return py::make_tuple(h, c, act);
}

py::tuple lstm_backward(const py::object& dh_obj, const py::object& dc_obj, const py::object& act_obj,
                        const py::object& c_prev_obj, const py::object& c_obj) {
  Operands ops("lstm_cell_backward");
  py::array dh = ops.take(dh_obj, "dh");
  const int64_t B = dh.shape(0), H = dh.shape(1);
  const char* how = "(batch, hidden_size) from dh";
  py::array dc = ops.take(dc_obj, "dc");
  ops.expect(dc, "dc", B, H, how);
  py::array act = ops.take(act_obj, "act");
  ops.expect(act, "act", B, 4 * H, "(batch, 4 * hidden_size) from dh");
  py::array c_prev = ops.take(c_prev_obj, "c_prev");
  ops.expect(c_prev, "c_prev", B, H, how);
  py::array c = ops.take(c_obj, "c");
  ops.expect(c, "c", B, H, how);
  py::array dgates = new_like(dh, B, 4 * H), dc_prev = new_like(dh, B, H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::lstm_cell_backward(in<T>(dh), in<T>(dc), in<T>(act), in<T>(c_prev), in<T>(c), out<T>(dgates),
                            out<T>(dc_prev), B, H);
  });
  return py::make_tuple(dgates, dc_prev);
}

py::tuple gru_forward(const py::object& gi_obj, const py::object& gh_obj, const py::object& h_prev_obj) {
  Operands ops("gru_cell_forward");
  py::array gi = ops.take(gi_obj, "gi");
  const int64_t B = gi.shape(0), H = ops.hidden(gi, "gi", 3, "r, z, n");
  py::array gh = ops.take(gh_obj, "gh");
  ops.expect(gh, "gh", B, 3 * H, "(gi's shape)");
  py::array h_prev = ops.take(h_prev_obj, "h_prev");
  ops.expect(h_prev, "h_prev", B, H, "(batch, hidden_size) from gi");
  py::array h = new_like(gi, B, H), saved = new_like(gi, B, 4 * H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::gru_cell_forward(in<T>(gi), in<T>(gh), in<T>(h_prev), out<T>(h), out<T>(saved), B, H);
  });
  return py::make_tuple(h, saved);
}

py::tuple gru_backward(const py::object& dh_obj, const py::object& saved_obj, const py::object& h_prev_obj) {
  Operands ops("gru_cell_backward");
  py::array dh = ops.take(dh_obj, "dh");
  const int64_t B = dh.shape(0), H = dh.shape(1);
  py::array saved = ops.take(saved_obj, "saved");
  ops.expect(saved, "saved", B, 4 * H, "(batch, 4 * hidden_size) from dh");
  py::array h_prev = ops.take(h_prev_obj, "h_prev");
  ops.expect(h_prev, "h_prev", B, H, "(batch, hidden_size) from dh");
  py::array dgi = new_like(dh, B, 3 * H), dgh = new_like(dh, B, 3 * H), dh_prev = new_like(dh, B, H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::gru_cell_backward(in<T>(dh), in<T>(saved), in<T>(h_prev), out<T>(dgi), out<T>(dgh), out<T>(dh_prev), B, H);
  });
  return py::make_tuple(dgi, dgh, dh_prev);
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(rnn) {
  m.def("lstm_cell_forward", &lstm_forward, py::arg("gates"), py::arg("c_prev"),
        "lstm_cell_forward(gates, c_prev) -> (h, c, act): one LSTM step after its matrix products. gates "
        "(B, 4H): the pre-activations in PyTorch's order (i, f, g, o); c_prev (B, H). act = [sigmoid(i), "
        "sigmoid(f), tanh(g), sigmoid(o)] (B, 4H); c = f c_prev + i g; h = o tanh(c).");
  m.def("lstm_cell_backward", &lstm_backward, py::arg("dh"), py::arg("dc"), py::arg("act"), py::arg("c_prev"),
        py::arg("c"),
        "lstm_cell_backward(dh, dc, act, c_prev, c) -> (dgates, dc_prev): the gradients w.r.t. the gate "
        "pre-activations (B, 4H) and c_prev (B, H), given dh and dc (B, H; dc the gradient reaching c from "
        "later steps, may be zeros) and the forward's act, c_prev and c.");
  m.def("gru_cell_forward", &gru_forward, py::arg("gi"), py::arg("gh"), py::arg("h_prev"),
        "gru_cell_forward(gi, gh, h_prev) -> (h, saved): one GRU step after its matrix products. gi = x W_ih^T "
        "+ b_ih, gh = h_prev W_hh^T + b_hh (B, 3H, order r, z, n); r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z "
        "+ gh_z), n = tanh(gi_n + r gh_n), h = (1 - z) n + z h_prev; saved = [r, z, n, gh_n] (B, 4H).");
  m.def("gru_cell_backward", &gru_backward, py::arg("dh"), py::arg("saved"), py::arg("h_prev"),
        "gru_cell_backward(dh, saved, h_prev) -> (dgi, dgh, dh_prev): the gradients w.r.t. gi and gh (B, 3H; "
        "dgh = [dgi_r, dgi_z, dgi_n r]) and the direct one w.r.t. h_prev, dh z (the caller adds dgh W_hh).");
}

}  // namespace dlkern::bind
