"""Optimizer step time: dlkern.optim against torch.optim on the same parameters and
gradients (by default the parameter shapes of an MLP 784-256-256-10, float32).

Each optimizer is validated first (one step from the same start must give the same
parameters as PyTorch), then ``step()`` is timed with the shared interleaved harness
at a fixed thread count, median of the samples.
"""

import argparse
import time

import numpy as np

from dlkern.bench import common, harness

DESCRIPTION = "optimizer step time, dlkern.optim vs torch.optim"

MLP_SHAPES = [(256, 784), (256,), (256, 256), (256,), (10, 256), (10,)]
CONFIGS = {
    "SGD": {"lr": 0.01},
    "SGD-momentum": {"lr": 0.01, "momentum": 0.9},
    "SGD-nesterov-wd": {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    "Adagrad": {"lr": 0.01},
    "RMSprop": {"lr": 0.01},
    "RMSprop-centered-momentum": {"lr": 0.01, "centered": True, "momentum": 0.9},
    "Adam": {"lr": 1e-3},
    "Adam-amsgrad": {"lr": 1e-3, "amsgrad": True},
    "AdamW": {"lr": 1e-3},
    "RAdam": {"lr": 1e-3},
}
DEFAULT_REPEATS = 7
QUICK_REPEATS = 2


def _class_name(config):
    return config.split("-")[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--optimizers", default=",".join(CONFIGS),
                        help="configurations, comma separated (default: all of " + ", ".join(CONFIGS) + ")")
    parser.add_argument("--threads", type=int, default=1, help="thread count for both libraries (default 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed samples per library (default {DEFAULT_REPEATS}, {QUICK_REPEATS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke test, not a measurement")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--out", default=harness.default_out("optim"),
                        help="markdown report (default %(default)s)")


def _make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal(s).astype(dtype) * 0.05 for s in MLP_SHAPES]
    grads = [rng.standard_normal(s).astype(dtype) * 0.01 for s in MLP_SHAPES]
    return data, grads


def _dlkern_contender(config, data, grads):
    from dlkern import optim
    from dlkern.nn import Parameter
    from dlkern.tensor import Tensor

    params = [Parameter(d.copy()) for d in data]
    for p, g in zip(params, grads):
        p.grad = Tensor(g, dtype=g.dtype)
    opt = getattr(optim, _class_name(config))(params, **CONFIGS[config])
    return params, opt


def _torch_contender(torch, config, data, grads):
    params = [torch.tensor(d.copy(), requires_grad=True) for d in data]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g.copy())
    opt = getattr(torch.optim, _class_name(config))(params, **CONFIGS[config])
    return params, opt


def _validate(config, data, grads, torch):
    params, opt = _dlkern_contender(config, data, grads)
    tparams, topt = _torch_contender(torch, config, data, grads)
    for _ in range(3):
        opt.step()
        topt.step()
    tol = 1e-5 if data[0].dtype == np.float32 else 1e-12
    for p, t in zip(params, tparams):
        if not np.allclose(p.data, t.detach().numpy(), rtol=tol, atol=tol):
            raise common.BenchValidationError(f"{config}: dlkern and torch parameters differ after 3 steps")


def run(args) -> int:
    configs = [c.strip() for c in args.optimizers.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        print(f"unknown optimizer configuration(s) {unknown}; choose from {list(CONFIGS)}")
        return 2
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    dtype = np.dtype(args.dtype)
    torch, why = common.optional_import("torch")
    if torch is None:
        print(f"PyTorch not available, timing dlkern alone ({why})")
    data, grads = _make_params(dtype)
    n_params = sum(d.size for d in data)
    rows = []
    started = time.perf_counter()
    with common.pinned_threads(args.threads, torch):
        for config in configs:
            contenders = []
            _, opt = _dlkern_contender(config, data, grads)
            contenders.append(common.Contender("dlkern", opt.step))
            if torch is not None:
                _validate(config, data, grads, torch)
                _, topt = _torch_contender(torch, config, data, grads)
                contenders.append(common.Contender("torch", topt.step))
            timings = common.measure_interleaved(contenders, repeats, args.threads, settle_s=0.0)
            ours = timings["dlkern"].median
            theirs = timings["torch"].median if "torch" in timings else None
            rows.append([config, f"{ours * 1e3:.3f}", f"{theirs * 1e3:.3f}" if theirs else "-",
                         common.format_ratio(theirs, ours)])
            print(f"{config}: dlkern {rows[-1][1]} ms, torch {rows[-1][2]} ms, {rows[-1][3]}", flush=True)
    title = (f"Optimizer step on {n_params} {dtype.name} parameters (MLP 784-256-256-10 shapes), "
             f"{args.threads} thread(s), median of {repeats}")
    harness.write_table_report(args.out, title, [], [], ["optimizer", "dlkern ms/step", "torch ms/step",
                                                         "speed vs torch"], rows, common.describe_machine(torch, why),
                               started)
    return 0
