// Bindings for the recurrent layers' time loops (cpu/rnn_layer.h has the contract). The
// state, the outputs and the saves are written in place: those arrays must be
// C-contiguous, writeable and apart from every other operand; read-only inputs of any
// layout are copied once. Every shape, the step sizes and the dtypes are checked here,
// before the GIL is released.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bind/common.h"
#include "bind/rnn_operands.h"
#include "cpu/rnn_layer.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

using ArrayList = std::vector<std::pair<py::array, const char*>>;

// The checked step layout: batch_sizes a sequence of ints, each > 0, non-increasing,
// summing to N (the rows), the first at most B (the state's rows).
struct Steps {
  std::vector<int64_t> sizes;
  cpu::RnnSteps s;

  Steps(const char* op, const py::object& obj, const py::object& reverse, int64_t N, int64_t B, int64_t H) {
    const bool is_array = py::isinstance<py::array>(obj);
    if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) || !py::isinstance<py::sequence>(obj) ||
        (is_array && py::reinterpret_borrow<py::array>(obj).ndim() != 1))
      type_error(op, ": batch_sizes must be a sequence of ints (or a 1-D integer array), got ",
                 py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    const std::string what = std::string("batch_sizes item");
    int64_t total = 0;
    for (const py::handle item : py::reinterpret_borrow<py::sequence>(obj)) {
      const int64_t b = int64_arg(item, op, what.c_str());
      const int64_t t = static_cast<int64_t>(sizes.size());
      if (b <= 0) value_error(op, ": batch_sizes[", t, "] = ", b, "; every step needs at least one row");
      if (t > 0 && b > sizes.back())
        value_error(op, ": batch_sizes[", t, "] = ", b, " is larger than batch_sizes[", t - 1, "] = ", sizes.back(),
                    "; batch sizes must not increase (sort the sequences by length, longest first)");
      if (b > B) value_error(op, ": batch_sizes[", t, "] = ", b, " exceeds the state's ", B, " rows");
      total += b;
      if (total > N) break;  // reported below; also bounds the loop over a huge sequence
      sizes.push_back(b);
    }
    if (total > N) value_error(op, ": batch_sizes sum to more than the inputs' ", N, " rows");
    if (total < N) value_error(op, ": batch_sizes sum to ", total, " but the inputs have ", N, " rows");
    if (!py::isinstance<py::bool_>(reverse) &&
        py::str(py::type::of(reverse).attr("__name__")).cast<std::string>() != "bool")
      type_error(op, ": reverse must be a bool, got ", py::str(py::type::of(reverse).attr("__name__")).cast<std::string>());
    s.batch_sizes = sizes.data();
    s.steps = static_cast<int64_t>(sizes.size());
    s.reverse = reverse.cast<bool>();
    s.batch = B;
    s.hidden = H;
  }
};

bool relu_arg(const char* op, const py::object& obj) {
  if (py::isinstance<py::str>(obj)) {
    const std::string v = obj.cast<std::string>();
    if (v == "tanh" || v == "relu") return v == "relu";
  }
  value_error(op, ": nonlinearity must be 'tanh' or 'relu', got ", py_repr(obj));
}

// An optional save (N, cols): None (nullopt) or an array written in place.
std::optional<py::array> optional_save(Operands& ops, const py::object& obj, const char* arg, int64_t N,
                                       int64_t cols) {
  if (obj.is_none()) return std::nullopt;
  py::array a = ops.take_inout(obj, arg);
  ops.expect(a, arg, N, cols, "(the inputs' rows, as the forward saves them)");
  return a;
}

template <typename T>
T* out_or_null(std::optional<py::array>& a) {
  return a ? out<T>(*a) : nullptr;
}

// A read-only input of the given shape.
py::array input(Operands& ops, const py::object& obj, const char* arg, int64_t rows, int64_t cols, const char* how) {
  py::array a = ops.take(obj, arg);
  ops.expect(a, arg, rows, cols, how);
  return a;
}

// The recurrent weight (G H, H) and the state (B, H), whose rows give B.
py::array weight(Operands& ops, const py::object& obj, int G, int64_t H) {
  return input(ops, obj, "w_hh", G * H, H, "(gates * hidden_size, hidden_size)");
}

py::array state(Operands& ops, const py::object& obj, const char* arg, int64_t H) {
  py::array a = ops.take_inout(obj, arg);
  if (a.shape(1) != H)
    value_error(ops.op(), ": ", arg, " has shape ", shape_str(a), ", expected (batch, ", H, ")");
  return a;
}

void lstm_forward(const py::object& gates_o, const py::object& w_o, const py::object& h_o, const py::object& c_o,
                  const py::object& out_o, const py::object& sizes_o, const py::object& reverse_o,
                  const py::object& c_all_o, const py::object& c_prev_o, const py::object& h_prev_o) {
  Operands ops("lstm_layer_forward");
  py::array gates = ops.take_inout(gates_o, "gates");
  const int64_t N = gates.shape(0), H = ops.hidden(gates, "gates", 4, "i, f, g, o");
  py::array w = weight(ops, w_o, 4, H);
  py::array h = state(ops, h_o, "h", H);
  const int64_t B = h.shape(0);
  py::array c = state(ops, c_o, "c", H);
  ops.expect(c, "c", B, H, "(h's shape)");
  py::array o = ops.take_inout(out_o, "out");
  ops.expect(o, "out", N, H, "(gates' rows, hidden_size)");
  std::optional<py::array> c_all = optional_save(ops, c_all_o, "c_all", N, H);
  std::optional<py::array> c_prev = optional_save(ops, c_prev_o, "c_prev", N, H);
  std::optional<py::array> h_prev = optional_save(ops, h_prev_o, "h_prev", N, H);
  ops.require_disjoint({{w, "w_hh"}});
  Steps st(ops.op(), sizes_o, reverse_o, N, B, H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::lstm_layer_forward(st.s, out<T>(gates), in<T>(w), out<T>(h), out<T>(c), out<T>(o), out_or_null<T>(c_all),
                            out_or_null<T>(c_prev), out_or_null<T>(h_prev));
  });
}

py::array lstm_backward(const py::object& dout_o, const py::object& dh_o, const py::object& dc_o,
                        const py::object& act_o, const py::object& c_all_o, const py::object& c_prev_o,
                        const py::object& w_o, const py::object& sizes_o, const py::object& reverse_o) {
  Operands ops("lstm_layer_backward");
  py::array act = ops.take(act_o, "act");
  const int64_t N = act.shape(0), H = ops.hidden(act, "act", 4, "i, f, g, o");
  const char* rows = "(act's rows, hidden_size)";
  py::array dout = input(ops, dout_o, "dout", N, H, rows);
  py::array dh = state(ops, dh_o, "dh", H);
  const int64_t B = dh.shape(0);
  py::array dc = state(ops, dc_o, "dc", H);
  ops.expect(dc, "dc", B, H, "(dh's shape)");
  py::array c_all = input(ops, c_all_o, "c_all", N, H, rows);
  py::array c_prev = input(ops, c_prev_o, "c_prev", N, H, rows);
  py::array w = weight(ops, w_o, 4, H);
  ops.require_disjoint({{dout, "dout"}, {act, "act"}, {c_all, "c_all"}, {c_prev, "c_prev"}, {w, "w_hh"}});
  Steps st(ops.op(), sizes_o, reverse_o, N, B, H);
  py::array dgates = new_like(act, N, 4 * H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::lstm_layer_backward(st.s, in<T>(dout), out<T>(dh), out<T>(dc), in<T>(act), in<T>(c_all), in<T>(c_prev),
                             in<T>(w), out<T>(dgates));
  });
  return dgates;
}

void gru_forward(const py::object& gi_o, const py::object& w_o, const py::object& b_o, const py::object& h_o,
                 const py::object& out_o, const py::object& sizes_o, const py::object& reverse_o,
                 const py::object& saved_o, const py::object& h_prev_o) {
  Operands ops("gru_layer_forward");
  py::array gi = ops.take(gi_o, "gi");
  const int64_t N = gi.shape(0), H = ops.hidden(gi, "gi", 3, "r, z, n");
  py::array w = weight(ops, w_o, 3, H);
  std::optional<py::array> b;
  if (!b_o.is_none()) {
    b = ops.take(b_o, "b_hh", 1);
    if (b->shape(0) != 3 * H) value_error(ops.op(), ": b_hh has shape ", shape_str(*b), ", expected (", 3 * H, ",)");
  }
  py::array h = state(ops, h_o, "h", H);
  const int64_t B = h.shape(0);
  py::array o = ops.take_inout(out_o, "out");
  ops.expect(o, "out", N, H, "(gi's rows, hidden_size)");
  std::optional<py::array> saved = optional_save(ops, saved_o, "saved", N, 4 * H);
  std::optional<py::array> h_prev = optional_save(ops, h_prev_o, "h_prev", N, H);
  ArrayList read{{gi, "gi"}, {w, "w_hh"}};
  if (b) read.push_back({*b, "b_hh"});
  ops.require_disjoint(read);
  Steps st(ops.op(), sizes_o, reverse_o, N, B, H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::gru_layer_forward(st.s, in<T>(gi), in<T>(w), b ? in<T>(*b) : nullptr, out<T>(h), out<T>(o),
                           out_or_null<T>(saved), out_or_null<T>(h_prev));
  });
}

py::tuple gru_backward(const py::object& dout_o, const py::object& dh_o, const py::object& saved_o,
                       const py::object& h_prev_o, const py::object& w_o, const py::object& sizes_o,
                       const py::object& reverse_o) {
  Operands ops("gru_layer_backward");
  py::array saved = ops.take(saved_o, "saved");
  const int64_t N = saved.shape(0), H = ops.hidden(saved, "saved", 4, "r, z, n, h_n");
  const char* rows = "(saved's rows, hidden_size)";
  py::array dout = input(ops, dout_o, "dout", N, H, rows);
  py::array dh = state(ops, dh_o, "dh", H);
  const int64_t B = dh.shape(0);
  py::array h_prev = input(ops, h_prev_o, "h_prev", N, H, rows);
  py::array w = weight(ops, w_o, 3, H);
  ops.require_disjoint({{dout, "dout"}, {saved, "saved"}, {h_prev, "h_prev"}, {w, "w_hh"}});
  Steps st(ops.op(), sizes_o, reverse_o, N, B, H);
  py::array dgi = new_like(saved, N, 3 * H), dgh = new_like(saved, N, 3 * H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::gru_layer_backward(st.s, in<T>(dout), out<T>(dh), in<T>(saved), in<T>(h_prev), in<T>(w), out<T>(dgi),
                            out<T>(dgh));
  });
  return py::make_tuple(dgi, dgh);
}

void rnn_forward(const py::object& pre_o, const py::object& w_o, const py::object& h_o, const py::object& out_o,
                 const py::object& sizes_o, const py::object& reverse_o, const py::object& nonlinearity,
                 const py::object& h_prev_o) {
  Operands ops("rnn_layer_forward");
  py::array pre = ops.take_inout(pre_o, "pre");
  const int64_t N = pre.shape(0), H = pre.shape(1);
  py::array w = weight(ops, w_o, 1, H);
  py::array h = state(ops, h_o, "h", H);
  const int64_t B = h.shape(0);
  py::array o = ops.take_inout(out_o, "out");
  ops.expect(o, "out", N, H, "(pre's shape)");
  std::optional<py::array> h_prev = optional_save(ops, h_prev_o, "h_prev", N, H);
  ops.require_disjoint({{w, "w_hh"}});
  Steps st(ops.op(), sizes_o, reverse_o, N, B, H);
  const bool relu = relu_arg(ops.op(), nonlinearity);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::rnn_layer_forward(st.s, out<T>(pre), in<T>(w), out<T>(h), out<T>(o), out_or_null<T>(h_prev), relu);
  });
}

py::array rnn_backward(const py::object& dout_o, const py::object& dh_o, const py::object& out_o,
                       const py::object& w_o, const py::object& sizes_o, const py::object& reverse_o,
                       const py::object& nonlinearity) {
  Operands ops("rnn_layer_backward");
  py::array o = ops.take(out_o, "out");
  const int64_t N = o.shape(0), H = o.shape(1);
  py::array dout = input(ops, dout_o, "dout", N, H, "(out's shape)");
  py::array dh = state(ops, dh_o, "dh", H);
  const int64_t B = dh.shape(0);
  py::array w = weight(ops, w_o, 1, H);
  ops.require_disjoint({{dout, "dout"}, {o, "out"}, {w, "w_hh"}});
  Steps st(ops.op(), sizes_o, reverse_o, N, B, H);
  const bool relu = relu_arg(ops.op(), nonlinearity);
  py::array dpre = new_like(o, N, H);
  run(ops.dtype(), [&](auto zero) {
    using T = decltype(zero);
    cpu::rnn_layer_backward(st.s, in<T>(dout), out<T>(dh), in<T>(o), in<T>(w), out<T>(dpre), relu);
  });
  return dpre;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(rnn_layer) {
  const auto no = py::none();
  m.def("lstm_layer_forward", &lstm_forward, py::arg("gates"), py::arg("w_hh"), py::arg("h"), py::arg("c"),
        py::arg("out"), py::arg("batch_sizes"), py::arg("reverse") = false, py::arg("c_all") = no,
        py::arg("c_prev") = no, py::arg("h_prev") = no,
        "lstm_layer_forward(gates, w_hh, h, c, out, batch_sizes, reverse=False, c_all=None, c_prev=None, "
        "h_prev=None) -> None: one LSTM layer over packed time-major rows (step t: batch_sizes[t] rows). gates "
        "(N, 4H) = x W_ih^T + b_ih + b_hh, overwritten with the activated gates [i, f, g, o]; w_hh (4H, H); "
        "h, c (B, H) the state, updated in place; out (N, H) each step's h; c_all (each step's c), c_prev, "
        "h_prev (the state before each step), all (N, H), written when given.");
  m.def("lstm_layer_backward", &lstm_backward, py::arg("dout"), py::arg("dh"), py::arg("dc"), py::arg("act"),
        py::arg("c_all"), py::arg("c_prev"), py::arg("w_hh"), py::arg("batch_sizes"), py::arg("reverse") = false,
        "lstm_layer_backward(dout, dh, dc, act, c_all, c_prev, w_hh, batch_sizes, reverse=False) -> dgates: "
        "backward through time of lstm_layer_forward. dout (N, H) the output's gradient; dh, dc (B, H) the "
        "final state's, updated in place to the initial state's; act, c_all, c_prev the forward's. dgates "
        "(N, 4H) w.r.t. the gate pre-activations (the weight gradients are GEMMs over it).");
  m.def("gru_layer_forward", &gru_forward, py::arg("gi"), py::arg("w_hh"), py::arg("b_hh"), py::arg("h"),
        py::arg("out"), py::arg("batch_sizes"), py::arg("reverse") = false, py::arg("saved") = no,
        py::arg("h_prev") = no,
        "gru_layer_forward(gi, w_hh, b_hh, h, out, batch_sizes, reverse=False, saved=None, h_prev=None) -> "
        "None: one GRU layer over packed time-major rows. gi (N, 3H) = x W_ih^T + b_ih; w_hh (3H, H); b_hh "
        "(3H,) or None; n = tanh(gi_n + r (h W_hn^T + b_hn)); h (B, H) updated in place; out (N, H); saved "
        "(N, 4H) = [r, z, n, h W_hn^T + b_hn] and h_prev (N, H) written when given.");
  m.def("gru_layer_backward", &gru_backward, py::arg("dout"), py::arg("dh"), py::arg("saved"), py::arg("h_prev"),
        py::arg("w_hh"), py::arg("batch_sizes"), py::arg("reverse") = false,
        "gru_layer_backward(dout, dh, saved, h_prev, w_hh, batch_sizes, reverse=False) -> (dgi, dgh): backward "
        "through time of gru_layer_forward; dh (B, H) updated in place to the initial state's gradient; dgi, "
        "dgh (N, 3H) w.r.t. gi and h W_hh^T + b_hh.");
  m.def("rnn_layer_forward", &rnn_forward, py::arg("pre"), py::arg("w_hh"), py::arg("h"), py::arg("out"),
        py::arg("batch_sizes"), py::arg("reverse") = false, py::arg("nonlinearity") = "tanh",
        py::arg("h_prev") = no,
        "rnn_layer_forward(pre, w_hh, h, out, batch_sizes, reverse=False, nonlinearity='tanh', h_prev=None) -> "
        "None: one Elman RNN layer over packed time-major rows. pre (N, H) = x W_ih^T + b_ih + b_hh, "
        "overwritten with the full pre-activations; h' = tanh or relu of pre + h W_hh^T; h (B, H) updated in "
        "place; out (N, H); h_prev (N, H) written when given.");
  m.def("rnn_layer_backward", &rnn_backward, py::arg("dout"), py::arg("dh"), py::arg("out"), py::arg("w_hh"),
        py::arg("batch_sizes"), py::arg("reverse") = false, py::arg("nonlinearity") = "tanh",
        "rnn_layer_backward(dout, dh, out, w_hh, batch_sizes, reverse=False, nonlinearity='tanh') -> dpre: "
        "backward through time of rnn_layer_forward (out its outputs); dh (B, H) updated in place; dpre (N, H) "
        "w.r.t. the pre-activations.");
}

}  // namespace dlkern::bind
