"""Smoke tests of ``python -m dlkern bench autograd``: it validates, times and writes its
report (timings not checked), and its validation catches a wrong gradient."""

import argparse
import os
from pathlib import Path

import pytest

from dlkern.bench import common

# The benchmarks live in bench/cases of this checkout: load autograd from there.
os.environ.setdefault("DLKERN_BENCH_CASES", str(Path(__file__).resolve().parents[1] / "bench" / "cases"))
from dlkern.bench import load_benchmark  # noqa: E402

bench = load_benchmark("autograd")


def parse(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_quick_run_writes_report(tmp_path):
    out = tmp_path / "a.md"
    args = parse("--cases", "linear8,mlp8", "--repeats", "1", "--min-sample-ms", "1", "--out", str(out))
    assert bench.run(args) == 0
    text = out.read_text()
    assert "linear8 (8-8, batch 1)" in text and "mlp8 (8-8-8-8, batch 1)" in text
    assert "PyTorch/dlkern" in text or "torch" not in text


def test_unknown_case_is_an_error():
    with pytest.raises(SystemExit, match="unknown case"):
        bench.run(parse("--cases", "nope"))


def test_validation_catches_a_wrong_gradient():
    case = bench.CASES["mlp8"]
    layers, x = bench.make_weights(case)
    out, grads = bench.numpy_step(layers, x)
    bench.validate(case, layers, x, {"ok": (out, grads)})
    bad = [(gw.copy(), gb.copy()) for gw, gb in grads]
    bad[1][0][0, 0] += 0.01
    with pytest.raises(common.BenchValidationError, match="gradient of layer 1"):
        bench.validate(case, layers, x, {"bad": (out, bad)})
    with pytest.raises(common.BenchValidationError, match="output"):
        bench.validate(case, layers, x, {"bad": (out + 0.01, grads)})
