"""A tiny GPT, dlkern beside PyTorch: training steps/s and KV-cache generation tokens/s.

Model: 6 layers, d_model 192, 6 heads, block 128, vocab 65, learned positions, tied
head, GELU (tanh) MLP, no dropout, float32. Training: batch 16 x 128 tokens, AdamW
(lr 3e-4, weight decay 0.01), one step = zero_grad, forward, cross-entropy, backward,
step. Generation: batch 1, a 1-token prompt, 127 new tokens, greedy, through a KV cache
(PyTorch: the same model written the way a PyTorch user writes a cached decode loop:
preallocated K/V tensors, scaled_dot_product_attention over the filled prefix, under
torch.inference_mode()).

Both libraries start from the same weights. Before timing, the full-sequence logits,
the loss and every parameter's gradient must agree, and greedy generation must produce
the same tokens.
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List

import numpy as np

import dlkern
from dlkern import nn, optim
from dlkern.models import GPT

from dlkern.bench import common, harness

DESCRIPTION = "tiny GPT training steps/s and cached generation tokens/s vs PyTorch"

CONFIG = dict(vocab_size=65, block_size=128, n_layer=6, n_head=6, d_model=192)
BATCH = 16
NEW_TOKENS = 127
# --quick: the same architecture, small enough for a test (and still validated).
QUICK = (dict(vocab_size=17, block_size=16, n_layer=2, n_head=2, d_model=32), 2, 8)
LR, WEIGHT_DECAY = 3e-4, 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a 2-layer d_model-32 model, batch 2: a smoke test")
    parser.add_argument("--out", default=harness.default_out("gpt"))
    parser.add_argument("--no-torch", action="store_true", help="benchmark dlkern alone")


# ----------------------------------------------------------------------------- PyTorch twin

def build_torch(torch, model: GPT):
    """The same architecture in PyTorch, with parameter names equal to dlkern's state_dict
    keys, loaded from the dlkern model's weights."""
    tnn, F = torch.nn, torch.nn.functional
    c = model.config
    d, h, layers = c["d_model"], c["n_head"], c["n_layer"]

    class Attention(tnn.Module):
        def __init__(self):
            super().__init__()
            self.in_proj_weight = tnn.Parameter(torch.empty(3 * d, d))
            self.in_proj_bias = tnn.Parameter(torch.empty(3 * d))
            self.out_proj = tnn.Linear(d, d)

        def qkv(self, x):
            b, t, _ = x.shape
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(b, t, 3, h, d // h)
            return qkv.permute(2, 0, 3, 1, 4)            # (3, B, H, T, D)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(x)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out_proj(o.transpose(1, 2).reshape(b, t, d))

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(d)
            self.attn = Attention()
            self.ln_2 = tnn.LayerNorm(d)
            self.mlp = tnn.Sequential(tnn.Linear(d, 4 * d), tnn.GELU(approximate="tanh"), tnn.Linear(4 * d, d))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class TorchGPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte = tnn.Embedding(c["vocab_size"], d)
            self.wpe = tnn.Embedding(c["block_size"], d)
            self.blocks = tnn.ModuleList(Block() for _ in range(layers))
            self.ln_f = tnn.LayerNorm(d)

        def forward(self, idx):
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe.weight[:t]
            for blk in self.blocks:
                x = blk(x)
            return F.linear(self.ln_f(x), self.wte.weight)   # tied head

        @torch.inference_mode()
        def generate(self, idx, max_new_tokens):
            b, t0 = idx.shape
            total = t0 + max_new_tokens
            caches = [(torch.empty(b, h, total, d // h), torch.empty(b, h, total, d // h)) for _ in self.blocks]
            out = torch.empty(b, total, dtype=torch.long)
            out[:, :t0] = idx
            pos, tokens = 0, idx
            for _ in range(max_new_tokens):
                t = tokens.shape[1]
                x = self.wte(tokens) + self.wpe.weight[pos:pos + t]
                for blk, (kc, vc) in zip(self.blocks, caches):
                    q, k, v = blk.attn.qkv(blk.ln_1(x))
                    kc[:, :, pos:pos + t] = k
                    vc[:, :, pos:pos + t] = v
                    o = F.scaled_dot_product_attention(q, kc[:, :, :pos + t], vc[:, :, :pos + t], is_causal=t > 1)
                    x = x + blk.attn.out_proj(o.transpose(1, 2).reshape(b, t, d))
                    x = x + blk.mlp(blk.ln_2(x))
                logits = F.linear(self.ln_f(x[:, -1]), self.wte.weight)
                pos += t
                tokens = logits.argmax(-1, keepdim=True)
                out[:, pos] = tokens[:, 0]
            return out

    tm = TorchGPT()
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    tkeys = set(tm.state_dict())
    if set(state) != tkeys:
        raise common.BenchValidationError(f"gpt: PyTorch twin's parameters differ from dlkern's: "
                                          f"{sorted(set(state) ^ tkeys)}")
    tm.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()})
    return tm


# ----------------------------------------------------------------------------- steps

def make_batch(config, batch, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, config["vocab_size"], (batch, config["block_size"])).astype(np.int64)
    return x, np.roll(x, -1, axis=1)


def dlkern_step(model, opt, x, y):
    v = model.config["vocab_size"]

    def step():
        opt.zero_grad()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss
    return step


def torch_step(torch, model, opt, x, y, v):

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, v), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss
    return step


def validate(torch, dl_model, t_model, x, y) -> Dict[str, float]:
    """Logits, greedy generation, the loss and every gradient must agree."""
    checks = {}
    with dlkern.no_grad():
        dl_logits = dl_model(x).data
    with torch.no_grad():
        t_logits = t_model(torch.from_numpy(x)).numpy()
    checks["logits"] = float(np.abs(dl_logits - t_logits).max() / np.abs(t_logits).max())
    prompt = x[:1, :1]
    count = min(24, dl_model.config["block_size"] - 1)
    dl_tokens = dl_model.generate(prompt, count, temperature=0)
    t_tokens = t_model.generate(torch.from_numpy(prompt), count).numpy()
    checks["generate_tokens_equal"] = float(np.array_equal(dl_tokens, t_tokens))
    # Gradients, not Adam-updated weights: Adam's first step moves every weight by about
    # lr * sign(grad), so float32 noise in gradients that are ~0 (the key bias's, exactly 0
    # in exact arithmetic) would be blown up to the size of a real update.
    v = dl_model.config["vocab_size"]
    dl_loss_t = nn.functional.cross_entropy(dl_model(x).reshape(-1, v), y.reshape(-1))
    dl_loss_t.backward()
    t_loss_t = torch.nn.functional.cross_entropy(t_model(torch.from_numpy(x)).reshape(-1, v),
                                                 torch.from_numpy(y).reshape(-1))
    t_loss_t.backward()
    worst = abs(float(dl_loss_t.item()) - float(t_loss_t.item())) / abs(float(t_loss_t.item()))
    tparams = dict(t_model.named_parameters())
    dparams = dict(dl_model.named_parameters())
    for name, p in dparams.items():
        tg = tparams[name].grad.numpy()
        worst = max(worst, float(np.abs(p.grad.data - tg).max()) / max(float(np.abs(tg).max()), 1e-12))
    checks["loss_and_grads"] = worst
    if not (checks["logits"] < 1e-4 and checks["loss_and_grads"] < 1e-3 and checks["generate_tokens_equal"] == 1.0):
        raise common.BenchValidationError(f"gpt: dlkern and PyTorch disagree: {checks}")
    return checks


def build_dlkern(config, seed=0):
    dlkern.manual_seed(seed)
    return GPT(**config)


# ----------------------------------------------------------------------------- run

def bench_threads(n_threads, args, torch) -> List[Dict]:
    config, batch, new_tokens = args.sizes
    x, y = make_batch(config, batch)
    rows = []
    model = build_dlkern(config)
    t_model = build_torch(torch, model) if torch is not None else None
    prompt = x[:1, :1]
    dl_opt = optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    train = [common.Contender("dlkern", dlkern_step(model, dl_opt, x, y))]
    gen = [common.Contender("dlkern", lambda: model.generate(prompt, new_tokens, temperature=0))]
    if torch is not None:
        t_opt = torch.optim.AdamW(t_model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        train.append(common.Contender("PyTorch", torch_step(torch, t_model, t_opt, torch.from_numpy(x),
                                                            torch.from_numpy(y), config["vocab_size"])))
        t_prompt = torch.from_numpy(prompt)
        gen.append(common.Contender("PyTorch", lambda: t_model.generate(t_prompt, new_tokens)))
    with common.pinned_threads(n_threads, torch):
        for what, contenders, unit, per_call in (("train", train, "steps/s", 1),
                                                 ("generate", gen, "tokens/s", new_tokens)):
            timings = common.measure_interleaved(contenders, args.repeats, n_threads)
            row = {"what": what, "threads": n_threads, "unit": unit}
            for c in contenders:
                row[c.name] = per_call / timings[c.name].median
            rows.append(row)
            ratio = f" | dlkern/PyTorch {row['dlkern'] / row['PyTorch']:.2f}x" if "PyTorch" in row else ""
            print(f"[{n_threads}T] {what}: dlkern {row['dlkern']:.1f} {unit}"
                  + (f" | PyTorch {row['PyTorch']:.1f} {unit}" if "PyTorch" in row else "") + ratio, flush=True)
    return rows


def run(args) -> int:
    torch, why = (None, "--no-torch") if args.no_torch else common.optional_import("torch")
    if torch is None:
        print(f"PyTorch not available, benchmarking dlkern alone ({why})")
    started = time.perf_counter()
    args.sizes = QUICK if args.quick else (CONFIG, BATCH, NEW_TOKENS)
    config, batch, new_tokens = args.sizes
    checks = {}
    x, y = make_batch(config, batch)
    if torch is not None:
        with common.pinned_threads(1, torch):
            dl_model = build_dlkern(config)
            checks = validate(torch, dl_model, build_torch(torch, dl_model), x, y)
        print(f"validated: {checks}")
    else:
        with dlkern.no_grad():
            if not np.isfinite(build_dlkern(config)(x).data).all():
                raise common.BenchValidationError("gpt: non-finite logits")
    notes, rows = [], []
    for n_threads in [int(t) for t in args.threads.split(",")]:
        if n_threads > 1:
            a = np.random.default_rng(2).standard_normal((512, 512)).astype(np.float32)
            c = np.empty_like(a)
            notes.append("scaling probe (512^3 matmul): " + common.check_thread_scaling(
                lambda: dlkern.ops.matmul(a, a, out=c), n_threads).describe())
            print(notes[-1])
        rows += bench_threads(n_threads, args, torch)
    targets = {"train": ">= 1.0x PyTorch", "generate": ">= 1.5x PyTorch"}
    headers = ["what", "threads", "dlkern", "PyTorch", "dlkern/PyTorch", "target"]
    table = [[r["what"], str(r["threads"]), f"{r['dlkern']:.1f} {r['unit']}",
              f"{r['PyTorch']:.1f} {r['unit']}" if "PyTorch" in r else "-",
              f"{r['dlkern'] / r['PyTorch']:.2f}x" if "PyTorch" in r else "-", targets[r["what"]]] for r in rows]
    machine = common.describe_machine(torch, why)
    harness.write_table_report(args.out, "dlkern tiny-GPT benchmark", [
        f"- **model**: GPT {config['n_layer']} layers, d_model {config['d_model']}, {config['n_head']} heads, "
        f"block {config['block_size']}, vocab {config['vocab_size']}, learned positions, tied head, "
        "tanh-GELU MLP, no dropout, float32",
        f"- **train**: batch {batch} x {config['block_size']}, AdamW lr {LR} wd {WEIGHT_DECAY}; one step = "
        "zero_grad, forward, "
        "cross-entropy, backward, step",
        f"- **generate**: batch 1, 1-token prompt, {new_tokens} new tokens, greedy, KV cache (PyTorch: "
        "preallocated K/V, SDPA over the filled prefix, inference_mode)",
        "- **method**: same initial weights; logits, loss, gradients and greedy tokens checked before "
        f"timing ({', '.join(f'{k} {v:.1e}' for k, v in checks.items()) or 'dlkern alone'}); medians of "
        "interleaved samples; ratio = dlkern rate / PyTorch rate"],
        notes, headers, table, machine, started)
    return 0
