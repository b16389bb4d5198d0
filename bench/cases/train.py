"""Training steps per second, dlkern beside PyTorch on the same model, batch and optimizer.

Models (float32, random inputs of the data sets' shapes):
  mlp       MLP 784-256-256-10, batch 128, Adam lr 1e-3
  lenet     LeNet-5 on 1x28x28, batch 64, SGD lr 0.01 momentum 0.9
  charlstm  `train --model lstm`'s defaults: RNNLM (vocab 65, embedding 128, LSTM 256 x 2
            layers, linear head), batch 16 windows of 128 characters, AdamW lr 2e-3
            weight decay 0.01, next-token cross-entropy over every position
  chargru   the same with a GRU

Before timing, both libraries start from the same weights and one step is checked:
the losses and every parameter after the update must agree. A profile of dlkern's
step then splits its time between the compiled kernels (dlkern._C calls) and Python.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Dict, List

import numpy as np

import dlkern
from dlkern import nn, optim
from dlkern.models import RNNLM, LeNet5, MLP

from dlkern.bench import common, harness, load_module

DESCRIPTION = "training steps/s of MLP, LeNet-5 and the character LSTM/GRU vs PyTorch"
MODELS = ("mlp", "lenet", "charlstm", "chargru")
LM_MODELS = {"charlstm": "lstm", "chargru": "gru"}
LM_VOCAB, LM_BLOCK = 65, 128   # Shakespeare's character set; train's default window
DEFAULT_MODELS = "mlp,lenet,charlstm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma list of: " + ", ".join(MODELS)
                        + " (with --amp: mlp1024, lenet, gpt; default all three)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="batch 8 and 1-ms samples: a smoke test")
    parser.add_argument("--out", default=harness.default_out("train"))
    parser.add_argument("--no-torch", action="store_true", help="benchmark dlkern alone")
    parser.add_argument("--amp", choices=("bf16",), default=None,
                        help="autocast rows instead (bench/cases/_train_amp.py): dlkern and PyTorch, "
                             "bfloat16 autocast beside float32, on issue 16's MLP, LeNet and the tiny GPT")


# ----------------------------------------------------------------------------- models

def build_dlkern(name: str, batch=None):
    dlkern.manual_seed(0)
    if name in LM_MODELS:
        model = RNNLM(LM_VOCAB, d_model=128, hidden_size=256, num_layers=2, cell=LM_MODELS[name])
        return model, optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01), (batch or 16, LM_BLOCK)
    if name == "mlp":
        model = MLP(784, (256, 256), 10)
        return model, optim.Adam(model.parameters(), lr=1e-3), (batch or 128, 784)
    model = LeNet5(1, 10, input_size=28)
    return model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), (batch or 64, 1, 28, 28)


def _torch_lm(torch, cell: str):
    """RNNLM's twin with the same parameter names (wte, rnn, lm_head), so its state_dict loads."""
    tnn = torch.nn

    class CharLM(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte = tnn.Embedding(LM_VOCAB, 128)
            self.rnn = (tnn.LSTM if cell == "lstm" else tnn.GRU)(128, 256, 2, batch_first=True)
            self.lm_head = tnn.Linear(256, LM_VOCAB)

        def forward(self, idx):
            return self.lm_head(self.rnn(self.wte(idx))[0])

    return CharLM()


def build_torch(torch, name: str, dl_model):
    tnn = torch.nn
    if name in LM_MODELS:
        model = _torch_lm(torch, LM_MODELS[name])
        model.load_state_dict({k: torch.from_numpy(v.data.copy()) for k, v in dl_model.state_dict().items()})
        return model, torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    if name == "mlp":
        model = tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 256),
                               tnn.ReLU(), tnn.Linear(256, 10))
    else:
        model = tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
            tnn.Linear(84, 10))
    # Same weights, in parameter order (both models list weight, bias per layer in order).
    with torch.no_grad():
        for tp, dp in zip(model.parameters(), dl_model.parameters()):
            tp.copy_(torch.from_numpy(dp.data.copy()))
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if name == "mlp"
           else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    return model, opt


def make_batch(shape, seed=1):
    rng = np.random.default_rng(seed)
    if len(shape) == 2 and shape[1] == LM_BLOCK:   # token windows and their next tokens
        tokens = rng.integers(0, LM_VOCAB, (shape[0], shape[1] + 1)).astype(np.int64)
        return tokens[:, :-1].copy(), tokens[:, 1:].copy()
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, shape[0]).astype(np.int64)


def _flat_logits(logits, y):
    """(B, T, V) logits and (B, T) targets as (B*T, V) and (B*T,); classifiers pass through."""
    if y.ndim == 1:
        return logits, y
    b, t, v = logits.shape
    return logits.reshape(b * t, v), y.reshape(b * t)


def dlkern_step(model, opt, x, y):
    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(*_flat_logits(model(x), y))
        loss.backward()
        opt.step()
        return loss
    return step


def torch_step(torch, model, opt, x, y):
    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(*_flat_logits(model(x), y))
        loss.backward()
        opt.step()
        return loss
    return step


# ----------------------------------------------------------------------------- checks

def validate(name, torch, dl, tc, x_np, y_np) -> float:
    """One step of each from identical weights: losses and updated weights must agree."""
    (dl_model, dl_opt), (t_model, t_opt) = dl, tc
    dl_loss = float(dlkern_step(dl_model, dl_opt, dlkern.from_numpy(x_np), dlkern.from_numpy(y_np))().item())
    t_loss = float(torch_step(torch, t_model, t_opt, torch.from_numpy(x_np), torch.from_numpy(y_np))().item())
    worst = abs(dl_loss - t_loss) / max(abs(t_loss), 1e-6)
    for dp, tp in zip(dl_model.parameters(), t_model.parameters()):
        scale = max(float(np.abs(tp.detach().numpy()).max()), 1e-6)
        worst = max(worst, float(np.abs(dp.data - tp.detach().numpy()).max()) / scale)
    if not worst < 1e-3:
        raise common.BenchValidationError(f"{name}: dlkern and PyTorch disagree after one step "
                                          f"(worst relative difference {worst:.2e})")
    return worst


def kernel_share(step, calls: int = 50) -> float:
    """Fraction of a step's time spent inside dlkern._C (compiled kernels)."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        step()
    profile.disable()
    stats = pstats.Stats(profile)
    total = kernel = 0.0
    for (filename, _line, func), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        total += tottime
        if filename == "~" and "dlkern._C" in func:
            kernel += tottime
    return kernel / total if total > 0 else float("nan")


# ----------------------------------------------------------------------------- run

def bench_model(name, n_threads, args, torch) -> Dict:
    dl_model, dl_opt, shape = build_dlkern(name, 8 if args.quick else None)
    x_np, y_np = make_batch(shape)
    row = {"model": name, "threads": n_threads}
    contenders: List[common.Contender] = []
    if torch is not None:
        t_model, t_opt = build_torch(torch, name, dl_model)
        row["max_rel_diff"] = validate(name, torch, (dl_model, dl_opt), (t_model, t_opt), x_np, y_np)
        contenders.append(common.Contender("PyTorch", torch_step(torch, t_model, t_opt, torch.from_numpy(x_np),
                                                                 torch.from_numpy(y_np))))
    step = dlkern_step(dl_model, dl_opt, dlkern.from_numpy(x_np), dlkern.from_numpy(y_np))
    contenders.insert(0, common.Contender("dlkern", step))
    with common.pinned_threads(n_threads, torch):
        timings = common.measure_interleaved(contenders, args.repeats, n_threads,
                                             0.001 if args.quick else common.DEFAULT_MIN_SAMPLE_S)
        row["kernel_share"] = kernel_share(step, 5 if args.quick else 50)
    for contender in contenders:
        row[contender.name] = 1.0 / timings[contender.name].median
    return row


def run(args) -> int:
    if getattr(args, "amp", None):
        return load_module("_train_amp").run(args)
    torch, why = (None, "--no-torch") if args.no_torch else common.optional_import("torch")
    if torch is None:
        print(f"PyTorch not available, benchmarking dlkern alone ({why})")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"error: unknown model(s) {unknown}; choose from {list(MODELS)}")
    threads = [int(t) for t in args.threads.split(",")]
    notes, rows = [], []
    started = time.perf_counter()
    for n_threads in threads:
        if n_threads > 1:
            # A pure-kernel probe (a training step's Python part does not scale, by design).
            a = np.random.default_rng(2).standard_normal((512, 512)).astype(np.float32)
            c = np.empty_like(a)
            probe = lambda: dlkern.ops.matmul(a, a, out=c)  # noqa: E731
            notes.append("scaling probe (512^3 matmul): " +
                         common.check_thread_scaling(probe, n_threads).describe())
            print(notes[-1])
        for name in models:
            row = bench_model(name, n_threads, args, torch)
            rows.append(row)
            ratio = f"{row['dlkern'] / row['PyTorch']:.2f}x" if "PyTorch" in row else "-"
            print(f"[{n_threads}T] {name}: dlkern {row['dlkern']:.1f} steps/s"
                  + (f" | PyTorch {row['PyTorch']:.1f} steps/s | dlkern/PyTorch {ratio}" if "PyTorch" in row else "")
                  + f" | kernels {100 * row['kernel_share']:.0f}% of dlkern's step", flush=True)
    headers = ["model", "threads", "dlkern steps/s", "PyTorch steps/s", "dlkern/PyTorch",
               "dlkern time in kernels", "check (max rel. diff)"]
    table = [[r["model"], str(r["threads"]), f"{r['dlkern']:.1f}",
              f"{r['PyTorch']:.1f}" if "PyTorch" in r else "-",
              f"{r['dlkern'] / r['PyTorch']:.2f}x" if "PyTorch" in r else "-",
              f"{100 * r['kernel_share']:.0f}%",
              f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-"] for r in rows]
    machine = common.describe_machine(torch, why)
    harness.write_table_report(args.out, "dlkern training-step benchmark", [
        f"- **models**: MLP 784-256-256-10 batch {8 if args.quick else 128} Adam lr 1e-3; LeNet-5 1x28x28 batch "
        f"{8 if args.quick else 64} SGD lr 0.01 momentum 0.9; charlstm/chargru: RNNLM vocab {LM_VOCAB}, embedding "
        f"128, LSTM/GRU 256 x 2 layers, batch {8 if args.quick else 16} x {LM_BLOCK} characters, AdamW lr 2e-3 "
        "wd 0.01; float32; one step = zero_grad, forward, cross-entropy, backward, optimizer step",
        "- **method**: same initial weights in both libraries, one step checked (loss and updated weights) "
        "before timing; medians of interleaved samples; ratio = dlkern steps/s / PyTorch steps/s",
        "- **kernel share**: fraction of dlkern's step (cProfile) spent inside compiled dlkern._C calls; "
        "the rest is Python (autograd, modules, optimizer) and NumPy"],
        notes, headers, table, machine, started)
    return 0
