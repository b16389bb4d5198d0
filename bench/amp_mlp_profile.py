"""Profile of the autocast (bf16) MLP 784-1024-1024-10 batch-256 AdamW step at 1 thread:
median step / forward / forward+backward / optimizer times, then cProfile's top entries.
Used for bench/results/issue16_bench_train_amp.md's breakdown."""
import time, sys, numpy as np
import dlkern as dk
from dlkern import nn
dk.set_num_threads(1)
dk.manual_seed(0)
model = nn.Sequential(nn.Linear(784,1024), nn.ReLU(), nn.Linear(1024,1024), nn.ReLU(), nn.Linear(1024,10))
opt = dk.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
x = dk.randn(256,784); y = dk.tensor(np.random.randint(0,10,256))
F = nn.functional
def step():
    opt.zero_grad()
    with dk.autocast("cpu", dtype=dk.bfloat16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
def fwd():
    with dk.autocast("cpu", dtype=dk.bfloat16):
        return F.cross_entropy(model(x), y)
for _ in range(5): step()
def med(f, n=21):
    ts=[]
    for _ in range(n):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return np.median(ts)*1e3
print("step ms", med(step))
print("fwd ms", med(fwd))
def fb():
    l=fwd(); l.backward()
print("fwd+bwd ms", med(fb))
print("opt ms", med(opt.step))
import cProfile, pstats
cProfile.run("for _ in range(20): step()", "/tmp/mlp.prof")
pstats.Stats("/tmp/mlp.prof").sort_stats("tottime").print_stats(25)
