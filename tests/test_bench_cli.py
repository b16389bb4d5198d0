"""Smoke tests for ``python -m dlkern``: the CLI parses, ``info`` prints, and a tiny
matmul benchmark validates, times and writes its report. Timings are not checked:
these must pass on any machine, loaded or not, in a few seconds."""

import subprocess
import sys

import numpy as np
import pytest

import dlkern
from dlkern.bench import common
from dlkern.bench import matmul as matmul_bench


def run_cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "dlkern", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_info_prints_version():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    assert dlkern.__version__ in result.stdout


def test_info_json_is_build_info():
    import json

    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == dlkern.__version__


def test_unknown_bench_is_an_argparse_error():
    result = run_cli("bench", "nonsense")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr and "nonsense" in result.stderr


def test_quick_matmul_bench_writes_report(tmp_path):
    report = tmp_path / "m.md"
    result = run_cli("bench", "matmul", "--quick", "--shapes", "64", "--threads", "1", "--repeats", "1",
                     "--out", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.exists()
    text = report.read_text()
    assert "| dlkern |" in text  # the dlkern row of the details table
    assert "dlkern/NumPy" in text  # the speedup column
    assert "64x64x64" in text
    assert "python -m dlkern bench matmul" in text  # the exact command is recorded


@pytest.mark.parametrize("text, expected", [
    ("256", (256, 256, 256)),
    ("4096x768x3072", (4096, 768, 3072)),
    ("1X4096x4096", (1, 4096, 4096)),
])
def test_parse_shape(text, expected):
    shape = matmul_bench.parse_shape(text)
    assert (shape.m, shape.k, shape.n) == expected


@pytest.mark.parametrize("text", ["", "0", "4x4", "axbxc", "2x3x4x5"])
def test_parse_shape_rejects_nonsense(text):
    with pytest.raises(Exception):
        matmul_bench.parse_shape(text)


@pytest.mark.parametrize("sizes", [(33, 47, 29), (300, 257, 301)])  # whole product; sampled lines
def test_validation_catches_a_dropped_term(sizes):
    shape = matmul_bench.Shape(*sizes)
    a, b = matmul_bench.make_inputs(shape, np.dtype(np.float32))
    reference = matmul_bench.float64_reference(shape, a, b, np.random.default_rng(0))
    good = a @ b
    matmul_bench.validate_product("dlkern", 1, good, reference)
    wrong = good - np.outer(a[:, 3], b[3, :])  # as if one k step were skipped
    with pytest.raises(common.BenchValidationError, match="WRONG"):
        matmul_bench.validate_product("dlkern", 1, wrong, reference)


def test_validation_catches_nan():
    shape = matmul_bench.Shape(8, 8, 8)
    a, b = matmul_bench.make_inputs(shape, np.dtype(np.float64))
    reference = matmul_bench.float64_reference(shape, a, b, np.random.default_rng(0))
    bad = a @ b
    bad[7, 7] = np.nan
    with pytest.raises(common.BenchValidationError):
        matmul_bench.validate_product("numpy", 1, bad, reference)
