"""The time loop of one LSTM/GRU layer (forward, 1 thread): the C++ layer kernels
(ops.lstm_layer_forward / gru_layer_forward) against the former Python loop over
ops.gemm + the cell kernels, on identical buffers, alternated call by call in one process
(min of 9), so host load lands on both.

    python bench/rnn_loop_ab.py B T H     # e.g. 32 128 256, or 8 16 64
"""
import sys
import time

import numpy as np

import dlkern
import dlkern.ops as ops

dlkern.set_num_threads(1)
B, T, H = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
n = B * T; sizes = (B,) * T
r = np.random.default_rng(0)
f = np.float32
gi = r.standard_normal((n, 3 * H)).astype(f); w = (r.standard_normal((3 * H, H)) / 16).astype(f); b = r.standard_normal(3 * H).astype(f)
g4 = r.standard_normal((n, 4 * H)).astype(f); w4 = (r.standard_normal((4 * H, H)) / 16).astype(f)
def rows():
    return [(t * B, t * B + B) for t in range(T)]
def gru_py(train):
    h = np.zeros((B, H), f); out = np.empty((n, H), f)
    sv_all = np.empty((n, 4 * H), f) if train else None; hprev = np.empty((n, H), f) if train else None
    wt = np.ascontiguousarray(w.T); gh_all = np.zeros((n, 3 * H), f); gh_all[...] = b
    for s, e in rows():
        hp = h[:e - s]
        gh = ops.gemm(hp, wt, c=gh_all[s:e], beta=1.0)
        hn, sv = ops.gru_cell_forward(gi[s:e], gh, hp)
        if train: hprev[s:e] = hp; sv_all[s:e] = sv
        out[s:e] = hn; hp[...] = hn
def gru_cpp(train):
    h = np.zeros((B, H), f); out = np.empty((n, H), f)
    sv_all = np.empty((n, 4 * H), f) if train else None; hprev = np.empty((n, H), f) if train else None
    ops.gru_layer_forward(gi, w, b, h, out, sizes, False, sv_all, hprev)
def lstm_py(train):
    g = g4.copy(); h = np.zeros((B, H), f); c = np.zeros((B, H), f); out = np.empty((n, H), f)
    wt = np.ascontiguousarray(w4.T)
    if train: act_all = np.empty((n, 4*H), f); c_all = np.empty((n,H),f); cprev = np.empty((n,H),f); hprev=np.empty((n,H),f)
    for s, e in rows():
        hp, cp = h[:e-s], c[:e-s]
        if train: hprev[s:e] = hp; cprev[s:e] = cp
        gt = ops.gemm(hp, wt, c=g[s:e], beta=1.0)
        hr, cn, act = ops.lstm_cell_forward(gt, cp)
        if train: act_all[s:e] = act; c_all[s:e] = cn
        out[s:e] = hr; hp[...] = hr; cp[...] = cn
def lstm_cpp(train):
    g = g4.copy(); h = np.zeros((B, H), f); c = np.zeros((B, H), f); out = np.empty((n, H), f)
    if train: c_all = np.empty((n,H),f); cprev = np.empty((n,H),f); hprev=np.empty((n,H),f)
    else: c_all = cprev = hprev = None
    ops.lstm_layer_forward(g, w4, h, c, out, sizes, False, c_all, cprev, hprev)
fns = {"gru py": gru_py, "gru c++": gru_cpp, "lstm py": lstm_py, "lstm c++": lstm_cpp}
for train in (False, True):
    best = {k: 1e9 for k in fns}
    for rep in range(9):
        for k, fn in fns.items():
            t0 = time.perf_counter(); fn(train); best[k] = min(best[k], time.perf_counter() - t0)
    print(f"B{B} T{T} H{H} train={train}: " + ", ".join(f"{k} {v*1e3:.2f} ms" for k, v in best.items()))
