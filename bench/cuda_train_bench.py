"""Training steps per second on a CUDA device: dlkern beside PyTorch CUDA on the same
models, batches, optimizers and initial weights (the models and PyTorch twins of
`python -m dlkern bench train` and `bench gpt`), float32, TF32 off in both.

Before timing, both run two steps from the same weights and their losses must agree
(the second loss checks the first update). Each sample times `--steps` steps between
two device synchronisations; the table reports medians.

    python bench/cuda_train_bench.py --out train.md [--models mlp,lenet,gpt] [--repeats 7]
"""
import argparse

import numpy as np

import dlkern
from dlkern import optim
from dlkern.bench import load_module

from cuda_bench import median_seconds  # this folder's kernel benchmark: the same timing

gpt_bench, train_bench = load_module("gpt"), load_module("train")  # bench/cases: the same models and twins

try:
    import torch
    if not torch.cuda.is_available():
        torch = None
except ImportError:
    torch = None

MODELS = ("mlp", "lenet", "gpt")


def build(name):
    """(dlkern model, its optimizer factory, PyTorch twin or None, torch optimizer factory, x, y)."""
    if name == "gpt":
        model = gpt_bench.build_dlkern(gpt_bench.CONFIG)
        twin = gpt_bench.build_torch(torch, model) if torch is not None else None
        x, y = gpt_bench.make_batch(gpt_bench.CONFIG, gpt_bench.BATCH)
        make_dl = lambda m: optim.AdamW(m.parameters(), lr=gpt_bench.LR, weight_decay=gpt_bench.WEIGHT_DECAY)  # noqa: E731
        make_t = lambda m: torch.optim.AdamW(m.parameters(), lr=gpt_bench.LR,  # noqa: E731
                                             weight_decay=gpt_bench.WEIGHT_DECAY)
        return model, make_dl, twin, make_t, x, y
    model, _, shape = train_bench.build_dlkern(name)
    twin = None
    if torch is not None:
        twin, _ = train_bench.build_torch(torch, name, model)
    x, y = train_bench.make_batch(shape)
    if name == "mlp":
        make_dl = lambda m: optim.Adam(m.parameters(), lr=1e-3)  # noqa: E731
        make_t = lambda m: torch.optim.Adam(m.parameters(), lr=1e-3)  # noqa: E731
    else:
        make_dl = lambda m: optim.SGD(m.parameters(), lr=0.01, momentum=0.9)  # noqa: E731
        make_t = lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)  # noqa: E731
    return model, make_dl, twin, make_t, x, y


def step_fn(loss_of, opt):
    def step():
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        opt.step()
        return loss
    return step


def classes(name):
    return gpt_bench.CONFIG["vocab_size"] if name == "gpt" else 10


def bench(name, args):
    model, make_dl, twin, make_t, x, y = build(name)
    c = classes(name)
    model.to("cuda")
    dl_opt = make_dl(model)
    xd, yd = dlkern.tensor(x).to("cuda"), dlkern.tensor(y).to("cuda")
    dl_step = step_fn(lambda: dlkern.nn.functional.cross_entropy(model(xd).reshape(-1, c), yd.reshape(-1)), dl_opt)
    row = {"model": name}
    dl_losses = [float(dl_step().item()) for _ in range(2)]
    if twin is not None:
        twin.to("cuda")
        t_opt = make_t(twin)
        xt, yt = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
        t_step = step_fn(lambda: torch.nn.functional.cross_entropy(twin(xt).reshape(-1, c), yt.reshape(-1)), t_opt)
        t_losses = [float(t_step().item()) for _ in range(2)]
        worst = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(dl_losses, t_losses))
        row["check"] = worst
        if not worst < 1e-3:
            raise SystemExit(f"{name}: dlkern and PyTorch losses disagree on CUDA: {dl_losses} vs {t_losses}")
        row["PyTorch"] = 1.0 / median_seconds(t_step, torch.cuda.synchronize, args.repeats, args.steps)
    row["dlkern"] = 1.0 / median_seconds(dl_step, dlkern.cuda.synchronize, args.repeats, args.steps)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=10, help="steps per timed sample")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if not dlkern.cuda.is_available():
        raise SystemExit("no usable CUDA device")
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dlkern.cuda.matmul_allow_tf32 = False
    lines = ["# dlkern CUDA training-step benchmark", "",
             f"- dlkern build: `{dlkern.build_info()}`",
             f"- PyTorch: {torch.__version__ + ' on ' + torch.cuda.get_device_name() if torch else 'not available'}",
             "- models: MLP 784-256-256-10 batch 128 Adam; LeNet-5 batch 64 SGD momentum 0.9; tiny GPT "
             f"{gpt_bench.CONFIG} batch {gpt_bench.BATCH} AdamW; float32, TF32 off; ratio = dlkern steps/s / "
             "PyTorch steps/s", "",
             "| model | dlkern steps/s | PyTorch steps/s | dlkern/PyTorch | check (loss rel. diff) |",
             "|---|---|---|---|---|"]
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            r = bench(name, args)
        except Exception as exc:  # a missing or failing kernel: say which, go on to the next model
            lines.append(f"| {name} | not run: {type(exc).__name__}: {exc} | | | |")
            print(lines[-1], flush=True)
            continue
        ratio = f"{r['dlkern'] / r['PyTorch']:.2f}x" if "PyTorch" in r else "-"
        lines.append(f"| {name} | {r['dlkern']:.1f} | {r.get('PyTorch', float('nan')):.1f} | {ratio} | "
                     f"{r.get('check', float('nan')):.1e} |")
        print(lines[-1], flush=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
