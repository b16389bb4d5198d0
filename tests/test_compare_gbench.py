"""bench/compare_gbench.py on synthetic Google Benchmark JSON: ratios, units, repetitions,
errors, benchmarks present in one file only, the filter, the regression gate, bad input."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "compare_gbench.py"
_spec = importlib.util.spec_from_file_location("compare_gbench", SCRIPT)
cg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cg)


def bench(name, real, cpu=None, unit="ns", **extra):
    entry = {"name": name, "run_name": name, "run_type": "iteration", "iterations": 10,
             "real_time": real, "cpu_time": real if cpu is None else cpu, "time_unit": unit}
    entry.update(extra)
    return entry


def write(tmp_path, fname, benchmarks, **context):
    path = tmp_path / fname
    path.write_text(json.dumps({"context": {"num_cpus": 2, **context}, "benchmarks": benchmarks}))
    return str(path)


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def rows_by_name(rows):
    return {r[1]: r for r in rows}


def test_ratio_and_speedup_across_time_units(tmp_path):
    a = write(tmp_path, "a.json", [bench("gemm/f32/m:64", 2.0, unit="ms"), bench("softmax/f32", 500.0, unit="us")])
    b = write(tmp_path, "b.json", [bench("gemm/f32/m:64", 1000.0, unit="us"), bench("softmax/f32", 750000.0)])
    rows = rows_by_name(cg.compare(cg.load(a)[0], cg.load(b)[0]))
    # 2 ms -> 1000 us is 0.5; 500 us -> 750000 ns is 1.5.
    assert rows["gemm/f32/m:64"][2:5] == (2e6, 1e6, 0.5)
    assert rows["softmax/f32"][4] == pytest.approx(1.5)
    result = run(a, b)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("gemm/f32/m:64"))
    assert "2.000 ms" in line and "1.000 ms" in line and "0.500" in line and "2.00x" in line
    # One table per family, an overall geometric mean sqrt(0.5 * 1.5).
    assert "== gemm" in result.stdout and "== softmax" in result.stdout
    assert f"{math.sqrt(0.75):.3f}" in result.stdout.splitlines()[-1]


def test_cpu_time_metric(tmp_path):
    a = write(tmp_path, "a.json", [bench("x/1", 100.0, cpu=40.0)])
    b = write(tmp_path, "b.json", [bench("x/1", 100.0, cpu=10.0)])
    assert cg.compare(cg.load(a)[0], cg.load(b)[0], metric="cpu_time")[0][4] == pytest.approx(0.25)
    assert cg.compare(cg.load(a)[0], cg.load(b)[0])[0][4] == pytest.approx(1.0)


def test_repetitions_use_the_median(tmp_path):
    runs = [bench("x/1", t) for t in (10.0, 30.0, 11.0)]
    # Without aggregates: the median of the repeated runs (11), not the mean (17).
    assert cg.load(write(tmp_path, "r.json", runs))[0]["x/1"]["time_ns"]["real_time"] == 11.0
    # With aggregates: the median aggregate wins; mean/stddev rows are not benchmarks.
    aggs = [bench("x/1_mean", 17.0, run_name="x/1", run_type="aggregate", aggregate_name="mean"),
            bench("x/1_median", 12.0, run_name="x/1", run_type="aggregate", aggregate_name="median"),
            bench("x/1_stddev", 9.0, run_name="x/1", run_type="aggregate", aggregate_name="stddev")]
    loaded = cg.load(write(tmp_path, "g.json", runs + aggs))[0]
    assert list(loaded) == ["x/1"] and loaded["x/1"]["time_ns"]["real_time"] == 12.0


def test_errors_and_one_sided_benchmarks_are_listed_not_averaged(tmp_path):
    a = write(tmp_path, "a.json", [bench("ok/1", 10.0), bench("bad/1", 10.0), bench("gone/1", 5.0)])
    b = write(tmp_path, "b.json", [
        bench("ok/1", 20.0),
        {"name": "bad/1", "run_name": "bad/1", "error_occurred": True, "error_message": "bad: element 3 is 1"},
        bench("new/1", 7.0)])
    rows = rows_by_name(cg.compare(cg.load(a)[0], cg.load(b)[0]))
    assert rows["bad/1"][4] is None and "bad: element 3 is 1" in rows["bad/1"][5]
    assert rows["gone/1"][5] == "only in A" and rows["new/1"][5] == "only in B"
    out = run(a, b).stdout
    assert "error: bad: element 3 is 1" in out and "only in B" in out
    assert "over 1 benchmarks: 2.000" in out


def test_filter_and_regression_gate(tmp_path):
    a = write(tmp_path, "a.json", [bench("gemm/1", 10.0), bench("conv/1", 10.0)])
    b = write(tmp_path, "b.json", [bench("gemm/1", 10.5), bench("conv/1", 13.0)])
    assert [r[1] for r in cg.compare(cg.load(a)[0], cg.load(b)[0], pattern="^gemm")] == ["gemm/1"]
    assert run(a, b, "--filter", "gemm", "--fail-above", "1.1").returncode == 0
    slow = run(a, b, "--fail-above", "1.1")
    assert slow.returncode == 1 and "REGRESSION conv/1" in slow.stderr and "gemm/1" not in slow.stderr
    none = run(a, b, "--filter", "attention")
    assert none.returncode == 2 and "no benchmark" in none.stderr


def test_context_differences_are_noted(tmp_path):
    a = write(tmp_path, "a.json", [bench("x/1", 1.0)], dlkern_isa="avx512", dlkern_threads="2")
    b = write(tmp_path, "b.json", [bench("x/1", 1.0)], dlkern_isa="avx2", dlkern_threads="2")
    out = run(a, b).stdout
    assert "note: dlkern_isa differs: A=avx512 B=avx2" in out and "dlkern_threads" not in out


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read as JSON"),
    ('{"context": {}}', "no 'benchmarks' list"),
    ('{"benchmarks": [{"real_time": 1}]}', "without a name"),
    ('{"benchmarks": [{"name": "x", "real_time": 1, "time_unit": "fortnights"}]}', "unknown time_unit"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    good = write(tmp_path, "good.json", [bench("x/1", 1.0)])
    result = run(good, str(bad))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_missing_file_and_bad_options(tmp_path):
    good = write(tmp_path, "good.json", [bench("x/1", 1.0)])
    missing = run(good, str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    assert run(good, good, "--filter", "(").returncode == 2
    assert run(good, good, "--fail-above", "0").returncode == 2
    assert run(good, good, "--metric", "wall").returncode == 2


def test_real_dlkern_gbench_file_shape(tmp_path):
    """The fields dlkern_gbench writes (names with /real_time, counters, context)."""
    entry = bench("gemm/f32/m:64/k:64/n:64/real_time", 9212.0, cpu=4748.0, **{"FLOP/s": 5.69e10},
                  family_index=0, per_family_instance_index=0, repetitions=1, repetition_index=0, threads=1)
    a = write(tmp_path, "a.json", [entry], dlkern_isa="avx512", library_build_type="release")
    loaded, ctx = cg.load(a)
    assert loaded["gemm/f32/m:64/k:64/n:64/real_time"]["time_ns"] == {"real_time": 9212.0, "cpu_time": 4748.0}
    assert ctx["dlkern_isa"] == "avx512"
