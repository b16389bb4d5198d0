"""``python -m dlkern bench train --amp bf16``: training steps/s under autocast (bfloat16),
dlkern beside dlkern float32, PyTorch autocast (torch.autocast("cpu", dtype=torch.bfloat16))
and PyTorch float32, same models, weights, batches and optimizers, in one run.

Models: mlp1024 (MLP 784-1024-1024-10, batch 256, AdamW lr 1e-3 wd 0.01: issue 16's),
lenet (LeNet-5 1x28x28, batch 64, SGD lr 0.01 momentum 0.9), gpt (bench gpt's tiny GPT:
6 layers, d_model 192, batch 16 x 128, AdamW lr 3e-4 wd 0.01). One step = zero_grad,
forward + cross-entropy (under autocast for the autocast rows), backward, optimizer step.

Before timing, each model's loss and gradients are checked against PyTorch, in float32
and under autocast (see validate). A profile of dlkern's bf16 MLP step then says where
its time goes (GEMM, casts, elementwise, optimizer, Python).
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import time
from typing import Dict, List

import numpy as np

import dlkern
from dlkern import nn, optim
from dlkern.bench import common, harness, load_module
from dlkern.models import MLP

MODELS = ("mlp1024", "lenet", "gpt")
F32_TOL, AMP_LOSS_TOL = 1e-3, 1e-2


def _build(name, torch, quick):
    """(dlkern model, its optimizer, torch model or None, its optimizer, x, y, flatten?) --
    a fresh pair with equal weights (each contender steps its own copy)."""
    if name == "gpt":
        gpt = load_module("gpt")
        config, batch, _ = gpt.QUICK if quick else (gpt.CONFIG, gpt.BATCH, gpt.NEW_TOKENS)
        model = gpt.build_dlkern(config)
        opt = optim.AdamW(model.parameters(), lr=gpt.LR, weight_decay=gpt.WEIGHT_DECAY)
        x, y = gpt.make_batch(config, batch)
        t_model = t_opt = None
        if torch is not None:
            t_model = gpt.build_torch(torch, model)
            t_opt = torch.optim.AdamW(t_model.parameters(), lr=gpt.LR, weight_decay=gpt.WEIGHT_DECAY)
        return model, opt, t_model, t_opt, x, y
    train = load_module("train")
    if name == "lenet":
        model, opt, shape = train.build_dlkern("lenet", 8 if quick else None)
        x, y = train.make_batch(shape)
        t_model, t_opt = train.build_torch(torch, "lenet", model) if torch is not None else (None, None)
        return model, opt, t_model, t_opt, x, y
    dlkern.manual_seed(0)
    model = MLP(784, (1024, 1024), 10)
    opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x, y = train.make_batch((8 if quick else 256, 784))
    t_model = t_opt = None
    if torch is not None:
        tnn = torch.nn
        t_model = tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 1024), tnn.ReLU(), tnn.Linear(1024, 1024),
                                 tnn.ReLU(), tnn.Linear(1024, 10))
        with torch.no_grad():
            for tp, dp in zip(t_model.parameters(), model.parameters()):
                tp.copy_(torch.from_numpy(dp.data.copy()))
        t_opt = torch.optim.AdamW(t_model.parameters(), lr=1e-3, weight_decay=0.01)
    return model, opt, t_model, t_opt, x, y


def _flat(logits, y):
    if y.ndim == 1:
        return logits, y
    return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)


def _dl_loss(model, x, y):
    return nn.functional.cross_entropy(*_flat(model(x), y))


def dlkern_step(model, opt, x, y, amp):
    region = dlkern.autocast("cpu", dtype=dlkern.bfloat16) if amp else contextlib.nullcontext()
    x, y = dlkern.from_numpy(x), dlkern.from_numpy(y)

    def step():
        opt.zero_grad()
        with region:
            loss = _dl_loss(model, x, y)
        loss.backward()
        opt.step()
        return loss
    return step


def torch_step(torch, model, opt, x, y, amp):
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(*_flat(model(x), y))
        loss.backward()
        opt.step()
        return loss
    return step


def _grads(name, torch, amp, quick):
    """(dlkern loss, PyTorch loss, [(dlkern grad, PyTorch grad)] in float64) of one
    forward/backward from equal weights, under autocast or not."""
    model, _, t_model, _, x, y = _build(name, torch, quick)
    with dlkern.autocast("cpu", dtype=dlkern.bfloat16, enabled=amp):
        loss = _dl_loss(model, dlkern.from_numpy(x), dlkern.from_numpy(y))
    loss.backward()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        t_loss = torch.nn.functional.cross_entropy(*_flat(t_model(torch.from_numpy(x)), torch.from_numpy(y)))
    t_loss.backward()
    # the gpt twin has dlkern's parameter names; the Sequential twins list them in order
    t_params = dict(t_model.named_parameters())
    pairs = ([(p, t_params[n]) for n, p in model.named_parameters()] if name == "gpt"
             else list(zip(model.parameters(), t_model.parameters())))
    return float(loss.item()), float(t_loss.item()), [(p.grad.data.astype(np.float64),
                                                      tp.grad.numpy().astype(np.float64)) for p, tp in pairs]


def validate(name, torch, quick) -> Dict[str, float]:
    """float32: dlkern's loss and every gradient within 1e-3 (relative to the tensor's
    largest) of PyTorch's. autocast: the loss within 1e-2 of PyTorch autocast's, and
    dlkern's gradient error against the float32 gradients (relative norm, worst tensor)
    at most 1.5x PyTorch autocast's + 0.01 -- elementwise comparison of two bf16 runs
    is meaningless where a ReLU mask flips on a pre-activation that rounds across 0."""
    loss, t_loss, pairs = _grads(name, torch, False, quick)
    f32 = abs(loss - t_loss) / abs(t_loss)
    for g, tg in pairs:
        f32 = max(f32, float(np.abs(g - tg).max()) / max(float(np.abs(tg).max()), 1e-12))
    a_loss, ta_loss, a_pairs = _grads(name, torch, True, quick)

    def err(k):
        return max(float(np.linalg.norm(ap[k] - p[0]) / max(np.linalg.norm(p[0]), 1e-30))
                   for ap, p in zip(a_pairs, pairs))
    checks = {"f32": f32, "amp loss": abs(a_loss - ta_loss) / abs(ta_loss), "amp grad err": err(0),
              "torch amp grad err": err(1)}
    if not (f32 < F32_TOL and checks["amp loss"] < AMP_LOSS_TOL
            and checks["amp grad err"] <= 1.5 * checks["torch amp grad err"] + 0.01):
        raise common.BenchValidationError(f"{name}: dlkern and PyTorch disagree: {checks}")
    return checks


def bench_model(name, n_threads, args, torch) -> Dict:
    row = {"model": name, "threads": n_threads}
    contenders: List[common.Contender] = []
    for amp, tag in ((True, "autocast"), (False, "float32")):
        model, opt, t_model, t_opt, x, y = _build(name, torch, args.quick)
        contenders.append(common.Contender(f"dlkern {tag}", dlkern_step(model, opt, x, y, amp)))
        if torch is not None:
            contenders.append(common.Contender(f"PyTorch {tag}", torch_step(torch, t_model, t_opt, x, y, amp)))
    with common.pinned_threads(n_threads, torch):
        timings = common.measure_interleaved(contenders, args.repeats, n_threads,
                                             0.001 if args.quick else common.DEFAULT_MIN_SAMPLE_S)
    for c in contenders:
        row[c.name] = 1.0 / timings[c.name].median
    return row


# ----------------------------------------------------------------------------- profile

def _category(filename, func):
    """Where a cProfile entry's own time belongs."""
    if filename == "~":
        if "gemm" in func or "matmul" in func:
            return "GEMM (dlkern._C gemm/matmul)"
        if "astype" in func or "convert" in func or "bf16" in func or "f16" in func:
            return "casts (astype, ops.convert, the 16-bit <-> float32 conversions of the kernels' float32 path)"
        if "dlkern._C" in func:
            return "other dlkern._C kernels"
        return "NumPy / builtins (elementwise, reductions, allocation)"
    if "/optim/" in filename:
        return "optimizer (Python and the NumPy arithmetic it runs inline)"
    return "Python: autograd, modules, autocast"


def profile_mlp_step(quick, steps=20) -> List[List[str]]:
    """Where dlkern's bf16 MLP step spends its time: phases by wall clock, then each
    cProfile entry's own time by category (1 thread)."""
    model, opt, _, _, x, y = _build("mlp1024", None, quick)
    xt, yt = dlkern.from_numpy(x), dlkern.from_numpy(y)
    region = dlkern.autocast("cpu", dtype=dlkern.bfloat16)
    phases = dict.fromkeys(("zero_grad", "forward + loss (autocast)", "backward", "optimizer step"), 0.0)
    rows = []
    with common.pinned_threads(1):
        dlkern_step(model, opt, x, y, True)()  # warm
        for _ in range(steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            t1 = time.perf_counter()
            with region:
                loss = _dl_loss(model, xt, yt)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            opt.step()
            t4 = time.perf_counter()
            for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[key] += dt
        total = sum(phases.values())
        rows += [[f"phase: {k}", f"{1e3 * v / steps:.2f}", f"{100 * v / total:.0f}%"] for k, v in phases.items()]
        profile = cProfile.Profile()
        step = dlkern_step(model, opt, x, y, True)
        profile.enable()
        for _ in range(steps):
            step()
        profile.disable()
    cats: Dict[str, float] = {}
    top = []
    for (filename, _line, func), (_cc, _nc, tottime, _ct, _callers) in pstats.Stats(profile).stats.items():
        cat = _category(filename, func)
        cats[cat] = cats.get(cat, 0.0) + tottime
        top.append((tottime, func if filename == "~" else f"{os.path.basename(filename)}:{func}"))
    total = sum(cats.values())
    rows += [[f"self time: {k}", f"{1e3 * v / steps:.2f}", f"{100 * v / total:.0f}%"]
             for k, v in sorted(cats.items(), key=lambda kv: -kv[1])]
    rows += [[f"top entry: {name}", f"{1e3 * t / steps:.2f}", f"{100 * t / total:.0f}%"]
             for t, name in sorted(top, reverse=True)[:8]]
    return rows


def run(args) -> int:
    torch, why = (None, "--no-torch") if args.no_torch else common.optional_import("torch")
    if torch is None:
        print(f"PyTorch not available, benchmarking dlkern alone ({why})")
    # (train's default --models names its float32 models: --amp then runs its own three)
    models = list(MODELS) if args.models == load_module("train").DEFAULT_MODELS else [
        {"mlp": "mlp1024"}.get(m.strip(), m.strip()) for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"error: bench train --amp: unknown model(s) {unknown}; choose from {list(MODELS)}")
    started = time.perf_counter()
    checks = {}
    if torch is not None:
        with common.pinned_threads(1, torch):
            for name in models:
                checks[name] = validate(name, torch, args.quick)
                print(f"validated {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in checks[name].items()))
    notes, rows = [f"load average before the run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"], []
    names = ["dlkern autocast", "dlkern float32"] + (["PyTorch autocast", "PyTorch float32"] if torch else [])
    for n_threads in [int(t) for t in args.threads.split(",")]:
        if n_threads > 1:  # (is the host giving us the cores? as bench train says)
            a = np.random.default_rng(2).standard_normal((512, 512)).astype(np.float32)
            c = np.empty_like(a)
            notes.append("scaling probe (512^3 matmul): " + common.check_thread_scaling(
                lambda: dlkern.ops.matmul(a, a, out=c), n_threads).describe())
            print(notes[-1])
        for name in models:
            row = bench_model(name, n_threads, args, torch)
            rows.append(row)
            print(f"[{n_threads}T] {name}: " + " | ".join(f"{n} {row[n]:.2f}" for n in names) + " steps/s",
                  flush=True)
    notes.append(f"load average after the timings: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    headers = ["model", "threads"] + [f"{n} steps/s" for n in names] + ["dlkern amp / f32"]
    if torch is not None:
        headers += ["dlkern amp / PyTorch amp"]
    table = []
    for r in rows:
        line = [r["model"], str(r["threads"])] + [f"{r[n]:.2f}" for n in names]
        line.append(f"{r['dlkern autocast'] / r['dlkern float32']:.2f}x")
        if torch is not None:
            line.append(f"{r['dlkern autocast'] / r['PyTorch autocast']:.2f}x")
        table.append(line)
    profile = profile_mlp_step(args.quick)
    notes.append("profile of dlkern's bf16 mlp1024 step (1 thread, ms per step, share):\n>\n"
                 + "\n".join(f"> - {what}: {ms} ms ({share})" for what, ms, share in profile))
    machine = common.describe_machine(torch, why)
    batch = 8 if args.quick else None
    harness.write_table_report(args.out, "dlkern autocast (bf16) training-step benchmark", [
        f"- **models**: mlp1024 = MLP 784-1024-1024-10 batch {batch or 256} AdamW lr 1e-3 wd 0.01; lenet = "
        f"LeNet-5 1x28x28 batch {batch or 64} SGD lr 0.01 momentum 0.9; gpt = bench gpt's tiny GPT "
        f"({'--quick config' if args.quick else '6 layers, d_model 192, batch 16 x 128'}) AdamW lr 3e-4 wd 0.01",
        "- **autocast**: dlkern.autocast('cpu', dtype=dlkern.bfloat16) / torch.autocast('cpu', "
        "dtype=torch.bfloat16) around forward + cross-entropy; parameters float32; no GradScaler",
        "- **method**: same initial weights; before timing, float32: loss and every gradient of dlkern within "
        f"{F32_TOL:g} of PyTorch's (relative to each tensor's largest); autocast: loss within {AMP_LOSS_TOL:g} of "
        "PyTorch autocast's, and dlkern autocast's gradient error vs the float32 gradients (relative norm, "
        "worst tensor) <= 1.5x PyTorch autocast's + 0.01 -- "
        + ("; ".join(f"{m}: " + ", ".join(f"{k} {v:.1e}" for k, v in c.items()) for m, c in checks.items())
           or "dlkern alone") + "; medians of interleaved samples of the four contenders"],
        notes, headers, table, machine, started)
    return 0
