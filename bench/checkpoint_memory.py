"""Gradient checkpointing on the GPT: peak host memory (tracemalloc, which sees NumPy's
array allocations) and time of one training step (forward + backward), with and without
GPT.checkpoint_activations.

    PYTHONPATH=python python bench/checkpoint_memory.py [--n-layer 4 --d-model 128 ...]
"""

import argparse
import statistics
import time
import tracemalloc

import numpy as np

import dlkern
from dlkern.models import GPT
from dlkern.nn import functional as F


def step(model, idx, vocab):
    model.zero_grad()
    logits = model(idx)
    F.cross_entropy(logits.reshape(-1, vocab), idx.reshape(-1)).backward()


def build(args, checkpointed):
    dlkern.manual_seed(0)
    model = GPT(args.vocab, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                d_model=args.d_model, dropout=args.dropout)
    model.checkpoint_activations = checkpointed
    idx = dlkern.tensor(np.random.default_rng(0).integers(0, args.vocab, size=(args.batch_size, args.block_size)))
    step(model, idx, args.vocab)  # warm-up: .grad arrays exist from here on, as in training
    return model, idx


def peak_memory(model, idx, vocab):
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step(model, idx, vocab)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def measure(args):
    """{checkpointed: (peak bytes, median s, min s)}; the two models' steps alternate, so
    a load change on a shared machine hits both alike."""
    runs = {ck: build(args, ck) for ck in (False, True)}
    peaks = {ck: peak_memory(m, idx, args.vocab) for ck, (m, idx) in runs.items()}
    times = {False: [], True: []}
    for _ in range(args.repeats):
        for ck, (m, idx) in runs.items():
            t0 = time.perf_counter()
            step(m, idx, args.vocab)
            times[ck].append(time.perf_counter() - t0)
    return {ck: (peaks[ck], statistics.median(times[ck]), min(times[ck])) for ck in runs}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    dlkern.set_num_threads(args.threads)
    print(f"GPT n_layer {args.n_layer} d_model {args.d_model} n_head {args.n_head} block {args.block_size} "
          f"batch {args.batch_size} vocab {args.vocab} dropout {args.dropout}, {args.threads} thread(s)")
    rows = measure(args)
    for ck, (peak, med, best) in rows.items():
        print(f"checkpoint_activations={ck!s:5}  peak step memory {peak / 2**20:8.1f} MiB  "
              f"step time median {med * 1e3:7.1f} ms (min {best * 1e3:.1f})")
    (p0, m0, b0), (p1, m1, b1) = rows[False], rows[True]
    print(f"memory saving {100 * (1 - p1 / p0):.1f}% | time cost +{100 * (m1 / m0 - 1):.1f}% (median), "
          f"+{100 * (b1 / b0 - 1):.1f}% (min)")


if __name__ == "__main__":
    main()
