// Sequence models and training steps: attention forward/backward, RoPE, the KV-cache
// append, the LSTM / GRU / RNN cells, one LSTM layer's time loop, Adam and SGD steps.
#include <cstring>

#include "cpu/attention.h"
#include "cpu/optim.h"
#include "cpu/rnn.h"
#include "cpu/rnn_layer.h"
#include "gbench_util.h"

namespace {

double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

// Args: batch, heads (query), kv heads, T (= Tq = Tk), D; causal.
struct AttnShape {
  int64_t B, Hq, Hkv, T, D;
  bool causal;
};
AttnShape attn_shape(const benchmark::State& st) {
  return {st.range(0), st.range(1), st.range(2), st.range(3), st.range(4), st.range(5) != 0};
}

// softmax(scale q k^T, causal) v by the definition, q (B, Hq, T, D), k/v (B, Hkv, T, D).
std::vector<double> ref_attention(const AttnShape& s, const std::vector<double>& q, const std::vector<double>& k,
                                  const std::vector<double>& v) {
  std::vector<double> out(size_t(s.B * s.Hq * s.T * s.D)), p(size_t(s.T));
  const double scale = 1 / std::sqrt(double(s.D));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h) {
      const int64_t kvh = h / (s.Hq / s.Hkv);
      const double* kb = k.data() + (b * s.Hkv + kvh) * s.T * s.D;
      const double* vb = v.data() + (b * s.Hkv + kvh) * s.T * s.D;
      for (int64_t i = 0; i < s.T; ++i) {
        const double* qi = q.data() + ((b * s.Hq + h) * s.T + i) * s.D;
        const int64_t keys = s.causal ? i + 1 : s.T;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < keys; ++j) {
          double d = 0;
          for (int64_t x = 0; x < s.D; ++x) d += qi[x] * kb[j * s.D + x];
          p[j] = d * scale;
          mx = std::max(mx, p[j]);
        }
        for (int64_t j = 0; j < keys; ++j) sum += (p[j] = std::exp(p[j] - mx));
        double* oi = out.data() + ((b * s.Hq + h) * s.T + i) * s.D;
        for (int64_t j = 0; j < keys; ++j)
          for (int64_t x = 0; x < s.D; ++x) oi[x] += p[j] / sum * vb[j * s.D + x];
      }
    }
  return out;
}

template <typename T>
dlkern::cpu::HeadView<T> contiguous_view(const T* p, int64_t H, int64_t len, int64_t D) {
  return {p, H * len * D, len * D, D};
}

// The forward against the loop above; the backward against the central difference of
// <dout, attention(q + t uq, k + t uk, v + t uv)>, the loop's, in double.
void BM_attention(benchmark::State& state, bool backward) {
  const AttnShape s = attn_shape(state);
  const int64_t nq = s.B * s.Hq * s.T * s.D, nkv = s.B * s.Hkv * s.T * s.D;
  auto q = gbench::uniform<float>(nq, 71), k = gbench::uniform<float>(nkv, 72), v = gbench::uniform<float>(nkv, 73);
  auto dout = gbench::uniform<float>(nq, 74);
  std::vector<float> out(static_cast<size_t>(nq)), lse(size_t(s.B * s.Hq * s.T)), dq(static_cast<size_t>(nq)), dk(static_cast<size_t>(nkv)), dv(static_cast<size_t>(nkv));
  dlkern::cpu::AttentionProblem<float> pr;
  pr.B = s.B, pr.Hq = s.Hq, pr.Hkv = s.Hkv, pr.Tq = pr.Tk = s.T, pr.D = pr.Dv = s.D;
  pr.q = contiguous_view(q.data(), s.Hq, s.T, s.D);
  pr.k = contiguous_view(k.data(), s.Hkv, s.T, s.D);
  pr.v = contiguous_view(v.data(), s.Hkv, s.T, s.D);
  pr.causal = s.causal;
  pr.scale = 1 / std::sqrt(float(s.D));
  auto run = [&] {
    if (backward)
      dlkern::cpu::attention_backward(pr, contiguous_view(dout.data(), s.Hq, s.T, s.D),
                                      contiguous_view<float>(out.data(), s.Hq, s.T, s.D), lse.data(), dq.data(),
                                      dk.data(), dv.data());
    else
      dlkern::cpu::attention_forward(pr, out.data(), lse.data());
  };
  if (backward) dlkern::cpu::attention_forward(pr, out.data(), lse.data());  // the backward reads out and lse
  run();
  const auto qd = gbench::widen(q), kd = gbench::widen(k), vd = gbench::widen(v), doutd = gbench::widen(dout);
  bool ok;
  if (!backward) {
    ok = gbench::check_close(state, "attention_forward", out.data(), ref_attention(s, qd, kd, vd), 1e-5);
  } else {
    const auto uq = gbench::uniform<double>(nq, 75), uk = gbench::uniform<double>(nkv, 76),
               uv = gbench::uniform<double>(nkv, 77);
    const double want = gbench::central_difference([&](double t) {
      return gbench::dot(ref_attention(s, gbench::along(qd, uq, t), gbench::along(kd, uk, t), gbench::along(vd, uv, t)),
                         doutd).first;
    });
    const auto a = gbench::dot(dq, uq), b = gbench::dot(dk, uk), c = gbench::dot(dv, uv);
    ok = gbench::check_scalar(state, "attention_backward", a.first + b.first + c.first, want, 1e-4,
                              a.second + b.second + c.second);
  }
  if (!ok) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  const double pairs = double(s.B * s.Hq) * double(s.T) * double(s.T) * (s.causal ? 0.5 : 1.0);
  gbench::set_flops(state, pairs * 4.0 * double(s.D) * (backward ? 2.5 : 1.0));
}
BENCHMARK_CAPTURE(BM_attention, forward, false)->Name("attention_forward/f32")
    ->ArgNames({"B", "Hq", "Hkv", "T", "D", "causal"})->Args({2, 8, 8, 256, 64, 1})->Args({2, 8, 2, 256, 64, 0})
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, backward, true)->Name("attention_backward/f32")
    ->ArgNames({"B", "Hq", "Hkv", "T", "D", "causal"})->Args({2, 8, 8, 128, 64, 1})->UseRealTime();

// RoPE (Args: n, T, D): pairs (d, d + D/2) of position t rotated by t base^(-2d/D).
// KV-cache append (Args: B*H, T_new, D, cache length): rows copied at an offset.
void BM_rope(benchmark::State& state) {
  const int64_t n = state.range(0), T = state.range(1), D = state.range(2);
  auto x = gbench::uniform<float>(n * T * D, 78);
  std::vector<float> y(x.size());
  auto run = [&] { dlkern::cpu::rope(x.data(), y.data(), n, T, D, 0, 10000.0, false); };
  run();
  std::vector<double> want(x.size());
  for (int64_t r = 0; r < n; ++r)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D / 2; ++d) {
        const int64_t at = (r * T + t) * D + d;
        const double ang = double(t) * std::pow(10000.0, -2.0 * double(d) / double(D));
        want[at] = x[at] * std::cos(ang) - x[at + D / 2] * std::sin(ang);
        want[at + D / 2] = x[at] * std::sin(ang) + x[at + D / 2] * std::cos(ang);
      }
  if (!gbench::check_close(state, "rope", y.data(), want, 1e-5)) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 8.0 * double(x.size()));
}
BENCHMARK(BM_rope)->Name("rope/f32")->ArgNames({"n", "T", "D"})->Args({16, 512, 64})->UseRealTime();

void BM_kv_cache_append(benchmark::State& state) {
  const int64_t BH = state.range(0), T = state.range(1), D = state.range(2), S = state.range(3), offset = S - T;
  auto src = gbench::uniform<float>(BH * T * D, 79);
  std::vector<float> cache(size_t(BH * S * D), 0.f);
  auto run = [&] {
    dlkern::cpu::kv_cache_append(contiguous_view<float>(src.data(), BH, T, D), cache.data(), BH * S * D, S * D, D, 1,
                                 BH, T, D, offset);
  };
  run();
  std::vector<double> want(cache.size(), 0.0);
  for (int64_t r = 0; r < BH; ++r)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) want[(r * S + offset + t) * D + d] = src[(r * T + t) * D + d];
  if (!gbench::check_close(state, "kv_cache_append", cache.data(), want, 0.0)) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 8.0 * double(src.size()));
}
BENCHMARK(BM_kv_cache_append)->Name("kv_cache_append/f32")->ArgNames({"BH", "T_new", "D", "S"})
    ->Args({32, 64, 64, 1024})->UseRealTime();

// One LSTM cell by the definition: act = [sig(i), sig(f), tanh(g), sig(o)],
// c = f c_prev + i g, h = o tanh(c); returns <dh, h> + <dc, c> (the backward's loss).
double ref_lstm_cell(const std::vector<double>& gates, const std::vector<double>& c_prev, int64_t B, int64_t H,
                     std::vector<double>* h_out, const std::vector<double>& dh, const std::vector<double>& dc) {
  double loss = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < H; ++j) {
      const double* g = gates.data() + b * 4 * H;
      const double c = sigmoid(g[H + j]) * c_prev[b * H + j] + sigmoid(g[j]) * std::tanh(g[2 * H + j]);
      const double h = sigmoid(g[3 * H + j]) * std::tanh(c);
      if (h_out) (*h_out)[b * H + j] = h, (*h_out)[B * H + b * H + j] = c;
      if (!dh.empty()) loss += dh[b * H + j] * h + dc[b * H + j] * c;
    }
  return loss;
}

// kind: 0 lstm_cell_forward, 1 lstm_cell_backward, 2 gru_cell_forward. Args: B, H.
void BM_rnn_cell(benchmark::State& state, int kind) {
  const int64_t B = state.range(0), H = state.range(1);
  auto gates = gbench::uniform<float>(B * 4 * H, 81, -2, 2), gh = gbench::uniform<float>(B * 3 * H, 82, -2, 2);
  const auto gi = gbench::uniform<float>(B * 3 * H, 88, -2, 2);
  auto c_prev = gbench::uniform<float>(B * H, 83), dh = gbench::uniform<float>(B * H, 84),
       dc = gbench::uniform<float>(B * H, 85);
  std::vector<float> h(size_t(B * H)), c(size_t(B * H)), act(gates.size()), dgates(gates.size()), dc_prev(size_t(B * H));
  std::vector<float> hc(size_t(2 * B * H));
  if (kind == 1)  // the backward reads the forward's act and c
    dlkern::cpu::lstm_cell_forward(gates.data(), c_prev.data(), h.data(), c.data(), act.data(), B, H);
  auto run = [&] {
    if (kind == 0) dlkern::cpu::lstm_cell_forward(gates.data(), c_prev.data(), h.data(), c.data(), act.data(), B, H);
    if (kind == 1)
      dlkern::cpu::lstm_cell_backward(dh.data(), dc.data(), act.data(), c_prev.data(), c.data(), dgates.data(),
                                      dc_prev.data(), B, H);
    if (kind == 2) dlkern::cpu::gru_cell_forward(gi.data(), gh.data(), c_prev.data(), h.data(), act.data(), B, H);
  };
  run();
  const auto gd = gbench::widen(gates), cd = gbench::widen(c_prev);
  bool ok;
  if (kind == 0) {
    std::vector<double> want(size_t(2 * B * H));
    ref_lstm_cell(gd, cd, B, H, &want, {}, {});
    std::copy(h.begin(), h.end(), hc.begin());
    std::copy(c.begin(), c.end(), hc.begin() + B * H);
    ok = gbench::check_close(state, "lstm_cell_forward", hc.data(), want, 1e-5);
  } else if (kind == 1) {
    const auto ug = gbench::uniform<double>(int64_t(gates.size()), 86), uc = gbench::uniform<double>(B * H, 87);
    const auto dhd = gbench::widen(dh), dcd = gbench::widen(dc);
    const double want = gbench::central_difference([&](double t) {
      return ref_lstm_cell(gbench::along(gd, ug, t), gbench::along(cd, uc, t), B, H, nullptr, dhd, dcd);
    });
    const auto a = gbench::dot(dgates, ug), b = gbench::dot(dc_prev, uc);
    ok = gbench::check_scalar(state, "lstm_cell_backward", a.first + b.first, want, 1e-4, a.second + b.second);
  } else {
    // r = sig(gi_r + gh_r), z = sig(gi_z + gh_z), n = tanh(gi_n + r gh_n), h = (1 - z) n + z h_prev.
    std::vector<double> want(size_t(B * H));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < H; ++j) {
        const float *x = gi.data() + b * 3 * H, *g = gh.data() + b * 3 * H;
        const double r = sigmoid(double(x[j]) + g[j]), z = sigmoid(double(x[H + j]) + g[H + j]);
        const double n = std::tanh(x[2 * H + j] + r * g[2 * H + j]);
        want[b * H + j] = (1 - z) * n + z * c_prev[b * H + j];
      }
    ok = gbench::check_close(state, "gru_cell_forward", h.data(), want, 1e-5);
  }
  if (!ok) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(B * H) * 10.0);
}
#define DLKERN_CELL(name, kind) \
  BENCHMARK_CAPTURE(BM_rnn_cell, name, kind)->Name(#name "/f32")->ArgNames({"B", "H"})->Args({64, 512})->UseRealTime()
DLKERN_CELL(lstm_cell_forward, 0);
DLKERN_CELL(lstm_cell_backward, 1);
DLKERN_CELL(gru_cell_forward, 2);

// One LSTM layer over T steps of a full batch (Args: T, B, H): per step h W_hh^T (the
// recurrent GEMM) plus the cell; checked against that loop in double. The layer
// overwrites its gates and state, so they are restored outside the timed region.
void BM_lstm_layer_forward(benchmark::State& state) {
  const int64_t T = state.range(0), B = state.range(1), H = state.range(2);
  const auto gates0 = gbench::uniform<float>(T * B * 4 * H, 91), w = gbench::uniform<float>(4 * H * H, 92, -0.1, 0.1);
  const auto h0 = gbench::uniform<float>(B * H, 93), c0 = gbench::uniform<float>(B * H, 94);
  std::vector<float> gates = gates0, h = h0, c = c0, out(size_t(T * B * H));
  const std::vector<int64_t> sizes(size_t(T), B);
  dlkern::cpu::RnnSteps st;
  st.batch_sizes = sizes.data(), st.steps = T, st.batch = B, st.hidden = H;
  auto run = [&] {
    dlkern::cpu::lstm_layer_forward<float>(st, gates.data(), w.data(), h.data(), c.data(), out.data(), nullptr,
                                           nullptr, nullptr);
  };
  run();
  std::vector<double> hd = gbench::widen(h0), cd = gbench::widen(c0), want(out.size()), step(size_t(B * 4 * H)),
                      hc(size_t(2 * B * H));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t r = 0; r < 4 * H; ++r) {
        double acc = gates0[(t * B + b) * 4 * H + r];
        for (int64_t x = 0; x < H; ++x) acc += hd[b * H + x] * w[r * H + x];
        step[b * 4 * H + r] = acc;
      }
    ref_lstm_cell(step, cd, B, H, &hc, {}, {});
    std::copy(hc.begin(), hc.begin() + B * H, hd.begin());
    std::copy(hc.begin() + B * H, hc.end(), cd.begin());
    std::copy(hd.begin(), hd.end(), want.begin() + t * B * H);
  }
  if (!gbench::check_close(state, "lstm_layer_forward", out.data(), want, 1e-4)) return;
  for (auto _ : state) {
    state.PauseTiming();
    gates = gates0, h = h0, c = c0;
    state.ResumeTiming();
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_flops(state, 2.0 * double(T * B) * double(4 * H) * double(H));
}
BENCHMARK(BM_lstm_layer_forward)->Name("lstm_layer_forward/f32")->ArgNames({"T", "B", "H"})->Args({16, 32, 256})
    ->UseRealTime();

// Fused optimizer steps (Args: n) against their update rules (cpu/optim.h), one step from
// the same state; the timed loop keeps stepping the same arrays.
void BM_optim(benchmark::State& state, bool adam) {
  const int64_t n = state.range(0);
  auto p = gbench::uniform<float>(n, 95), g = gbench::uniform<float>(n, 96), m = gbench::uniform<float>(n, 97, -0.1, 0.1);
  auto v = gbench::uniform<float>(n, 98, 0.0, 0.01);
  const auto af = dlkern::adam_factors("adam_step", false, 3, 1e-3, 0.9, 0.999, 1e-8, 0.01, true, false, false);
  const auto sf = dlkern::sgd_factors("sgd_step", true, 0.1, 0.9, 0.0, 1e-4, false, false, false);
  std::vector<double> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (adam) {
      const double pd = p[i] * af.decay, gd = g[i] + af.l2 * pd;
      const double mi = af.beta1 * m[i] + af.one_minus_beta1 * gd, vi = af.beta2 * v[i] + af.one_minus_beta2 * gd * gd;
      want[i] = pd + af.step_size * mi / (std::sqrt(vi) / af.bias_correction2_sqrt + af.eps);
    } else {
      const double gd = g[i] + sf.l2 * p[i], buf = sf.momentum * m[i] + sf.one_minus_dampening * gd;
      want[i] = p[i] + sf.neg_lr * buf;
    }
  }
  auto run = [&] {
    if (adam)
      dlkern::cpu::adam_step(p.data(), g.data(), m.data(), v.data(), (float*)nullptr, n, af);
    else
      dlkern::cpu::sgd_step(p.data(), g.data(), m.data(), n, sf);
  };
  run();
  if (!gbench::check_close(state, adam ? "adam_step" : "sgd_step", p.data(), want, 1e-6)) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(n) * (adam ? 7 : 5));
}
BENCHMARK_CAPTURE(BM_optim, adam, true)->Name("adam_step/f32")->ArgNames({"n"})->Arg(1 << 20)->UseRealTime();
BENCHMARK_CAPTURE(BM_optim, sgd, false)->Name("sgd_step/f32")->ArgNames({"n"})->Arg(1 << 20)->UseRealTime();

}  // namespace
