"""``python -m dlkern bench ddp``: the alpha-beta / ring all-reduce model on synthetic
numbers (no MPI), the worker's validation, and a quick run under ``mpirun -n 2`` whose
report must have every section. Timings are not checked: the host is shared."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkern.bench import common, ddp_worker, load_module
from dlkern.bench import scaling_model as sm
from mpi_support import mpi_env, require_mpi

CASES_DIR = Path(__file__).resolve().parents[1] / "bench" / "cases"
MiB = 2**20


@pytest.fixture(autouse=True)
def source_cases(monkeypatch):
    monkeypatch.setenv("DLKERN_BENCH_CASES", str(CASES_DIR))


# ----------------------------------------------------------------------------- the fit


def test_fit_recovers_alpha_and_beta_from_exact_data():
    sizes = np.geomspace(4, 100 * MiB, 16)
    alpha, beta = 7e-6, 1 / 3.5e9
    fit = sm.fit_alpha_beta(sizes, alpha + beta * sizes)
    assert fit.alpha_s == pytest.approx(alpha, rel=1e-9)
    assert fit.beta_s_per_byte == pytest.approx(beta, rel=1e-9)
    assert fit.bandwidth_gbs == pytest.approx(3.5, rel=1e-9)
    assert fit.max_abs_residual < 1e-9 and len(fit.residuals) == 16
    assert fit.predict(1e6) == pytest.approx(alpha + beta * 1e6)


def test_fit_weights_small_messages_like_large_ones():
    # 2 % noise of alternating sign: an ordinary least-squares fit would let the 100 MiB
    # points' absolute errors (~1 ms) swamp alpha (~us); the relative fit keeps it.
    sizes = np.geomspace(4, 100 * MiB, 20)
    alpha, beta = 5e-6, 1e-10
    noise = 1 + 0.02 * np.where(np.arange(20) % 2 == 0, 1.0, -1.0)
    fit = sm.fit_alpha_beta(sizes, (alpha + beta * sizes) * noise)
    assert fit.alpha_s == pytest.approx(alpha, rel=0.05)
    assert fit.beta_s_per_byte == pytest.approx(beta, rel=0.05)
    assert 0.015 < fit.rms_residual < 0.025
    ols_alpha = np.polyfit(sizes, (alpha + beta * sizes) * noise, 1)[1]
    assert abs(ols_alpha - alpha) > 0.5 * alpha  # off by > 50 %: the reason for the weighting


def test_fit_residuals_are_relative_and_signed():
    fit = sm.fit_alpha_beta([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])  # t = 1 + x exactly
    assert fit.alpha_s == pytest.approx(1.0) and fit.beta_s_per_byte == pytest.approx(1.0)
    bent = sm.fit_alpha_beta([1.0, 2.0, 3.0], [2.0, 3.5, 4.0])
    assert bent.residuals[1] > 0 and bent.residuals[0] < 0 and bent.residuals[2] < 0
    t = np.array([2.0, 3.5, 4.0])
    np.testing.assert_allclose(bent.residuals, (t - (bent.alpha_s + bent.beta_s_per_byte * np.array([1, 2, 3]))) / t)


@pytest.mark.parametrize("sizes, times, match", [
    ([1.0], [1.0], "two equally long"),
    ([1.0, 2.0], [1.0], "two equally long"),
    ([1.0, 2.0], [1.0, 0.0], "positive"),
    ([1.0, np.nan], [1.0, 2.0], "finite"),
    ([4.0, 4.0], [1.0, 2.0], "distinct"),
])
def test_fit_rejects_bad_input(sizes, times, match):
    with pytest.raises(ValueError, match=match):
        sm.fit_alpha_beta(sizes, times)


# ----------------------------------------------------------------------------- the ring model


@pytest.mark.parametrize("p, expected", [(1, 0.0), (2, 2 * 3 + 1000 * 2), (4, 6 * 3 + 1.5 * 1000 * 2),
                                         (256, 510 * 3 + 2 * 255 / 256 * 1000 * 2)])
def test_ring_allreduce(p, expected):
    assert sm.ring_allreduce_seconds(p, 1000, 3.0, 2.0) == pytest.approx(expected)


def test_ring_allreduce_rejects_no_ranks():
    with pytest.raises(ValueError, match="p must be"):
        sm.ring_allreduce_seconds(0, 1.0, 1.0, 1.0)


def test_bucket_sizes():
    assert sm.bucket_sizes(100 * MiB, 25 * MiB) == [25 * MiB] * 4
    assert sm.bucket_sizes(60, 25) == [25, 25, 10]
    assert sm.bucket_sizes(3, 25) == [3]
    assert sm.bucket_sizes(0, 25) == []
    # DDP's small first bucket: 1 + 3 x 25 + 24 MiB.
    assert sm.bucket_sizes(100 * MiB, 25 * MiB, MiB) == [MiB] + [25 * MiB] * 3 + [24 * MiB]
    assert sm.bucket_sizes(0.5 * MiB, 25 * MiB, MiB) == [0.5 * MiB]


def test_network_beta():
    assert sm.network_beta(10) == pytest.approx(8 / 10e9)
    assert sm.network_beta(100) * 100e9 / 8 == pytest.approx(1.0)


def test_predict_ddp_by_hand():
    # 3 buckets (25, 25, 10 bytes), p = 2, alpha 1, beta 1: each 2 + n.
    pred = sm.predict_ddp(2, 60, compute_s=90.0, alpha_s=1.0, beta_s_per_byte=1.0, bucket_bytes=25,
                          first_bucket_bytes=None)
    assert pred.comm_s == pytest.approx(27 + 27 + 12) and pred.last_bucket_s == pytest.approx(12)
    assert pred.backward_s == pytest.approx(60.0)
    assert pred.efficiency_no_overlap == pytest.approx(90 / (90 + 66))
    assert pred.exposed_overlap_s == pytest.approx(12)  # 66 - 60 = 6 < the last bucket's 12
    assert pred.efficiency_overlap == pytest.approx(90 / 102)
    slow = sm.predict_ddp(2, 60, compute_s=30.0, alpha_s=1.0, beta_s_per_byte=1.0, bucket_bytes=25,
                          first_bucket_bytes=None)
    assert slow.exposed_overlap_s == pytest.approx(66 - 20)  # the excess over the backward


def test_one_bucket_gains_nothing_from_overlap():
    pred = sm.predict_ddp(64, 0.5 * MiB, 0.1, 10e-6, sm.network_beta(10))
    assert pred.efficiency_overlap == pytest.approx(pred.efficiency_no_overlap)
    assert 0 < pred.efficiency_no_overlap < 1
    # 3 MiB: the 1 MiB first bucket hides behind the backward, the 2 MiB rest does not.
    two = sm.predict_ddp(64, 3 * MiB, 0.1, 10e-6, sm.network_beta(10))
    rest = sm.ring_allreduce_seconds(64, 2 * MiB, 10e-6, sm.network_beta(10))
    assert two.exposed_overlap_s == pytest.approx(rest) and two.efficiency_overlap > two.efficiency_no_overlap


def test_efficiency_table_shape_and_monotony():
    models = {"big": {"grad_bytes": 100 * MiB, "compute_s": 0.5}}
    rows = sm.efficiency_table(models, [10, 100], [8, 64, 256], 10e-6)
    assert [(r["model"], r["gbit"]) for r in rows] == [("big", 10), ("big", 100)]
    for r in rows:
        no, ov, _ = zip(*r["cells"].values())
        assert all(a <= b for a, b in zip(no, ov))           # overlap never hurts
        assert list(no) == sorted(no, reverse=True)           # more ranks, more alpha terms
    assert rows[1]["cells"][8][0] > rows[0]["cells"][8][0]  # a faster link helps


# ----------------------------------------------------------------------------- the worker, without MPI


class OneRank:
    """Enough of a communicator for validate_allreduce on rank 0 of 2."""

    def Get_size(self):
        return 2

    def Get_rank(self):
        return 0


def test_allreduce_validation_catches_a_wrong_sum():
    buf = np.empty(1000, np.float32)

    def right():
        buf[...] = ddp_worker.pattern(buf.size, 0) + ddp_worker.pattern(buf.size, 1)

    def wrong():
        right()
        buf[517] += 1

    ddp_worker.validate_allreduce(OneRank(), buf, [("good", right, False)])
    with pytest.raises(common.BenchValidationError, match="bad all-reduce of 4000 bytes is wrong .* element 517"):
        ddp_worker.validate_allreduce(OneRank(), buf, [("good", right, False), ("bad", wrong, False)])


def test_latency_sizes():
    sizes = ddp_worker.latency_sizes(100 * MiB, 16)
    assert sizes[0] == 4 and sizes[-1] == 100 * MiB and len(sizes) == 16
    assert all(s % 4 == 0 for s in sizes) and sizes == sorted(set(sizes))


def test_missing_mpi_is_a_clear_error(monkeypatch, capsys):
    case = load_module("ddp")
    monkeypatch.setattr(case, "mpirun_path", lambda: None)
    parser = argparse.ArgumentParser()
    case.add_arguments(parser)
    assert case.run(parser.parse_args(["--quick"])) == 2
    assert "mpirun" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    assert "pip install mpi4py" in case.missing_mpi()


def test_worker_env_pins_one_thread_and_finds_this_dlkern(monkeypatch):
    import dlkern

    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    env = load_module("ddp").worker_env()
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(dlkern.__file__).resolve().parents[1])


# ----------------------------------------------------------------------------- a quick run under MPI


def test_quick_bench_ddp_under_mpi(tmp_path):
    require_mpi()
    report = tmp_path / "ddp.md"
    env = mpi_env({"DLKERN_BENCH_CASES": str(CASES_DIR)})
    env.pop("OMP_NUM_THREADS")  # the bench sets it for its ranks
    result = subprocess.run([sys.executable, "-m", "dlkern", "bench", "ddp", "--quick", "--out", str(report)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    text = report.read_text()
    assert "\0" not in text
    for snippet in ["## All-reduce: dlkern.distributed vs raw mpi4py", "| 0.0625 |", "| 0.25 |",
                    "dlkern/mpi4py throughput", "dlkern bus GB/s", "## Alpha-beta fit", "1/beta =",
                    "## Measured scaling", "fit predicts", "| mlp | 269,322 | 8 |", "| lenet | 61,706 | 8 |",
                    "| 2 ranks samples/s |", "_overlap=False", "host alone", "lock-step",
                    "overlap gain @0.1", "(buckets: lenet ",
                    "## Model: ring all-reduce", "| 8 ranks |", "| 256 ranks |", "ResNet-50-sized", "25,557,032",
                    "GPT, 1 core per rank", "load", "mpirun -n 2", "## Machine", "python -m dlkern bench ddp"]:
        assert snippet in text, snippet
    assert text.count("| ResNet-50-sized (stated) |") == 6  # 3 networks x (efficiency, time)
    assert text.count("| GPT | 10 |") == 1  # both GPT rows send the same gradient: one time row
