"""``python -m dlkern bench``: the CLI parses, every benchmark validates, times and writes
its report at tiny sizes, and the validation catches wrong results. Timings are not
checked: these must pass on any machine, loaded or not."""

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlkern
from dlkern.bench import benchmarks, common, harness, load_benchmark, load_module

CASES_DIR = Path(__file__).resolve().parents[1] / "bench" / "cases"
KERNELS = ["matmul", "softmax", "cross_entropy", "gelu", "norm", "conv", "pool", "attention", "rnn"]
MODELS = ["autograd", "gpt", "optim", "train"]


@pytest.fixture(autouse=True)
def source_cases(monkeypatch):
    """The benchmarks live in bench/cases of this checkout, however dlkern is installed."""
    monkeypatch.setenv("DLKERN_BENCH_CASES", str(CASES_DIR))


def cases(name):
    return load_module(name)


def run_cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "dlkern", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def run_bench(name, *argv):
    bench = load_benchmark(name)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args([str(a) for a in argv]))


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


def test_every_benchmark_is_offered():
    assert set(KERNELS + MODELS) <= set(benchmarks())
    result = run_cli("bench", "--help", cwd=CASES_DIR.parents[1])
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in KERNELS + MODELS)


def test_without_any_tables_bench_says_where_they_would_be(tmp_path):
    import os

    env = dict(os.environ, DLKERN_BENCH_CASES=str(tmp_path / "none"))
    code = "import sys, dlkern.bench as b; b.source_cases_dir = lambda: None; from dlkern.__main__ import main; " \
           "sys.exit(main(['bench']))"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    # Missing tables are a broken install, not a wrong command line: exit 1, and say where they go.
    assert result.returncode == 1, result.stderr
    assert "dlkern/bench/cases" in result.stderr and "DLKERN_BENCH_CASES" in result.stderr


def load_bench_package_from(root: Path):
    """dlkern/bench/__init__.py loaded from a copy under ``root`` (laid out as site-packages)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("copied_dlkern_bench", root / "dlkern" / "bench" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_installed_copy_of_the_tables_is_found_before_the_working_directory(tmp_path, monkeypatch):
    import dlkern.bench

    site = tmp_path / "site-packages"
    (site / "dlkern" / "bench" / "cases").mkdir(parents=True)
    (site / "dlkern" / "bench" / "__init__.py").write_text(Path(dlkern.bench.__file__).read_text())
    (site / "dlkern" / "bench" / "cases" / "shipped.py").write_text("")
    elsewhere = tmp_path / "some-checkout"
    (elsewhere / "bench" / "cases").mkdir(parents=True)
    (elsewhere / "bench" / "cases" / "other.py").write_text("")
    monkeypatch.delenv("DLKERN_BENCH_CASES")
    monkeypatch.chdir(elsewhere)
    copied = load_bench_package_from(site)
    assert copied.source_cases_dir() == site / "dlkern" / "bench" / "cases"
    assert list(copied.benchmarks()) == ["shipped"]
    # The environment variable still wins, and the working directory is the last resort.
    monkeypatch.setenv("DLKERN_BENCH_CASES", str(elsewhere / "bench" / "cases"))
    assert list(copied.benchmarks()) == ["other"]
    monkeypatch.delenv("DLKERN_BENCH_CASES")
    (site / "dlkern" / "bench" / "cases" / "shipped.py").unlink()
    (site / "dlkern" / "bench" / "cases").rmdir()
    assert list(copied.benchmarks()) == ["other"]


def test_an_installed_dlkern_ships_the_current_tables(tmp_path, monkeypatch):
    import dlkern.bench

    installed = Path(dlkern.bench.__file__).resolve().parent / "cases"
    if not installed.is_dir():
        pytest.skip("dlkern is imported from a source checkout, which has no installed copy of bench/cases")
    monkeypatch.delenv("DLKERN_BENCH_CASES")
    monkeypatch.chdir(tmp_path)
    assert dlkern.bench.source_cases_dir() == installed
    source = {p.name: p.read_bytes() for p in CASES_DIR.glob("*.py")}
    assert {p.name: p.read_bytes() for p in installed.glob("*.py")} == source


def test_default_report_is_outside_the_package_and_tracked_results():
    out = harness.default_out("matmul")
    assert not out.startswith("bench/results") and "dlkern" not in Path(out).parts


def test_quick_matmul_bench_writes_report(tmp_path):
    report = tmp_path / "m.md"
    result = run_cli("bench", "matmul", "--quick", "--shapes", "64", "--threads", "1", "--repeats", "1",
                     "--out", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = report.read_text()
    assert "| dlkern |" in text  # the dlkern row of the details table
    assert "dlkern/NumPy" in text and "dlkern GFLOP/s" in text and "dlkern % peak" in text
    assert "64x64x64" in text
    assert "python -m dlkern bench matmul" in text  # the exact command is recorded
    assert "NumPy" in text and "BLAS" in text  # NumPy's BLAS is recorded with the machine


# Every shipped benchmark at tiny sizes, in-process: (argv, text its report must contain).
QUICK_RUNS = {
    "softmax": (["--shapes", "64x257"], ["| softmax | 64x257 | 1 |", "| log_softmax | 64x257 | 1 |", "GB/s"]),
    "cross_entropy": (["--shapes", "33x1003"], ["| 33x1003 | 1 |", "dlkern (out=)/NumPy"]),
    "gelu": (["--peers", "numpy"], ["GELU", "| forward |", "| backward |", "dlkern/NumPy"]),
    "norm": (["--ops", "layer_norm,batch_norm"], ["| layer_norm | 256x1024 | fwd+bwd | 1 |", "batch_norm"]),
    "conv": ([], ["LeNet conv1", "forward+backward", "GFLOP/s"]),
    "pool": (["--peers", "numpy"], ["| max 3x3 s2 p1 | fwd+bwd | 1 |", "dlkern/NumPy"]),
    "attention": ([], ["| sdpa", "## Decode step"]),
    "rnn": (["--shapes", "3x17", "--modules", "3x5x6x7x2", "--peers", "numpy"],
            ["| lstm | forward | 3x17 | 1 |", "| gru | backward |", "dlkern/NumPy", "## Modules",
             "| LSTM | forward+backward | B3 T5 in6 H7 L2 | 1 |", "| GRU | forward | B3 T5 in6 H7 L2 | 1 |"]),
}


@pytest.mark.parametrize("name", sorted(QUICK_RUNS))
def test_quick_run_validates_and_writes_report(name, tmp_path):
    argv, expected = QUICK_RUNS[name]
    out = tmp_path / f"{name}.md"
    assert run_bench(name, "--quick", "--threads", 1, "--repeats", 1, "--min-sample-ms", 1, "--settle-ms", 0,
                     "--out", out, *argv) == 0
    text = out.read_text()
    for snippet in expected:
        assert snippet in text, snippet
    assert "## Machine" in text and "median of 1 samples" in text


@pytest.mark.parametrize("name", KERNELS + MODELS)
def test_help_describes_the_benchmark(name):
    result = run_cli("bench", name, "--help", cwd=CASES_DIR.parents[1])
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout and "--repeats" in result.stdout


# ----------------------------------------------------------------------------- validation catches wrong results


def checked(case):
    inputs = case.make()
    return inputs, tuple(case.expected(inputs))


def assert_caught(case, good, bad, match="WRONG"):
    inputs, want = checked(case)
    harness.validate(case, "dlkern", good(inputs), inputs, want, 1, harness.LABELS)
    with pytest.raises(common.BenchValidationError, match=match):
        harness.validate(case, "dlkern", bad(inputs), inputs, want, 1, harness.LABELS)


@pytest.mark.parametrize("text, expected", [
    ("256", (256, 256, 256)),
    ("4096x768x3072", (4096, 768, 3072)),
    ("1X4096x4096", (1, 4096, 4096)),
])
def test_parse_matmul_shape(text, expected):
    assert cases("matmul").parse_matmul_shape(text)[:3] == expected


@pytest.mark.parametrize("text", ["", "0", "4x4", "axbxc", "2x3x4x5"])
def test_parse_matmul_shape_rejects_nonsense(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected N"):
        cases("matmul").parse_matmul_shape(text)


@pytest.mark.parametrize("sizes", [(33, 47, 29), (300, 257, 301)])  # whole product; sampled lines
def test_matmul_validation_catches_a_dropped_term(sizes):
    case = cases("matmul").matmul_case(*sizes)
    # As if one k step were skipped.
    assert_caught(case, lambda i: i["a"] @ i["b"], lambda i: i["a"] @ i["b"] - np.outer(i["a"][:, 3], i["b"][3, :]))


def test_matmul_validation_catches_nan():
    def nan(i):
        c = i["a"] @ i["b"]
        c[7, 7] = np.nan
        return c
    assert_caught(cases("matmul").matmul_case(8, 8, 8, dtype=np.float64), lambda i: i["a"] @ i["b"], nan)


def test_cross_entropy_validation_catches_a_wrong_gradient():
    case = cases("cross_entropy").cross_entropy_case(8, 50)
    step = case.libs["numpy"]

    def wrong(inputs):
        loss, grad = step(inputs, None)()
        grad[3, 7] += 1e-3
        return loss, grad
    assert_caught(case, lambda i: step(i, None)(), wrong, "gradient is WRONG")


def test_conv_validation_catches_a_wrong_weight_gradient():
    case = cases("conv").conv_case("tiny", 2, 3, 9, 4, 3, 2, 1, ("both", 1.0), True)
    run = case.libs["dlkern"]

    def wrong(inputs):
        y, dx, dw, db = run(inputs, None)()
        dw = dw.copy()
        dw[1, 2, 0, 1] += 1e-3 * np.abs(dw).max()
        return y, dx, dw, db
    assert_caught(case, lambda i: run(i, None)(), wrong, "dweight is WRONG")


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "group_norm", "batch_norm"])
def test_norm_references_agree_with_dlkern_and_catch_an_error(op):
    shape = (6, 64) if op in ("layer_norm", "rms_norm") else (2, 64, 3, 5)
    case = cases("norm").norm_case(op, shape, True)
    run = case.libs["dlkern"]
    assert_caught(case, lambda i: run(i, None)(), lambda i: (np.zeros(shape, np.float32),) + run(i, None)()[1:],
                  "y is WRONG")
    args = argparse.Namespace(peers=["numpy"], repeats=1, min_sample_ms=1.0, settle_ms=0.0)
    for backward in (False, True):  # the NumPy peer (float32, bench/cases/_numpy_peers.py) passes validation too
        result = harness.bench_case(cases("norm").norm_case(op, shape, backward), 1, args, None)
        assert set(result.timings) == {"dlkern", "numpy"} and all(t.median > 0 for t in result.timings.values())


PEER_CASES = {  # tiny cases whose NumPy column is bench/cases/_numpy_peers.py
    "norm layer_norm": lambda: cases("norm").norm_case("layer_norm", (6, 64), True),
    "norm rms_norm": lambda: cases("norm").norm_case("rms_norm", (6, 64), True),
    "norm group_norm": lambda: cases("norm").norm_case("group_norm", (2, 64, 3, 5), True),
    "norm batch_norm": lambda: cases("norm").norm_case("batch_norm", (2, 64, 3, 5), True),
    "conv": lambda: cases("conv").conv_case("tiny", 2, 3, 9, 4, 3, 2, 1, ("both", 1.0), True),
    "max pool": lambda: cases("pool").pool_case("max", 3, 1, "fwd+bwd", (2, 3, 9, 9)),
    "avg pool": lambda: cases("pool").pool_case("avg", 3, 1, "fwd+bwd", (2, 3, 9, 9)),
    "cross_entropy": lambda: cases("cross_entropy").cross_entropy_case(8, 50),
}


@pytest.mark.parametrize("name", sorted(PEER_CASES))
def test_numpy_peer_is_float32_and_matches_the_reference(name):
    # The peer is timed as "what a NumPy user writes for speed": float32 in, float32 out. The
    # float64 oracle (dlkern.reference) returns float64, so this fails if the column is
    # pointed back at the oracle; validate() checks the values against it.
    case = PEER_CASES[name]()
    inputs, want = checked(case)
    got = harness.as_tuple(case.libs["numpy"](inputs, None)())
    assert all(np.asarray(g).dtype == np.float32 for g in got), [np.asarray(g).dtype for g in got]
    harness.validate(case, "numpy", got, inputs, want, 1, harness.LABELS)


def test_numpy_peers_are_a_helper_not_a_benchmark():
    assert "_numpy_peers" not in benchmarks()
    assert cases("_numpy_peers").conv2d is cases("conv").peers.conv2d


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_pool_validation_catches_a_wrong_result(mode):
    case = cases("pool").pool_case("max", 3, 1, mode, (2, 3, 9, 9))
    run = case.libs["dlkern"]
    assert_caught(case, lambda i: run(i, None)(), lambda i: run(i, None)() * 1.001)


def test_attention_validation_catches_a_wrong_key_gradient():
    case = cases("attention").sdpa_case((1, 2, 20, 8), True, True)
    run = case.libs["dlkern"]

    def wrong(inputs):
        out, dq, dk, dv = run(inputs, None)()
        return out, dq, dk + 1e-2, dv
    assert_caught(case, lambda i: run(i, None)(), wrong, "dk is WRONG")


def test_a_missing_output_is_caught():
    case = cases("conv").conv_case("tiny", 2, 3, 9, 4, 3, 2, 1, ("both", 1.0), True)
    assert_caught(case, lambda i: case.libs["dlkern"](i, None)(), lambda i: case.libs["dlkern"](i, None)()[:3],
                  "3 outputs, expected 4")


def test_a_wrong_result_stops_the_cli_with_a_message(tmp_path, monkeypatch, capsys):
    from dlkern.__main__ import main

    monkeypatch.setattr(cases("softmax").ops, "softmax", lambda x, dim=-1, out=None: np.zeros_like(x))
    assert main(["bench", "softmax", "--shapes", "8x16", "--threads", "1", "--repeats", "1", "--peers", "numpy",
                 "--out", str(tmp_path / "s.md")]) == 1
    assert "softmax 8x16 at 1 thread(s): y is WRONG" in capsys.readouterr().err
    assert not (tmp_path / "s.md").exists()


# ----------------------------------------------------------------------------- model-level benchmarks (bench/cases)


def test_gpt_bench_quick_without_torch(tmp_path):
    out = tmp_path / "gpt.md"
    assert run_bench("gpt", "--quick", "--no-torch", "--threads", 1, "--repeats", 1, "--out", out) == 0
    text = out.read_text()
    assert "GPT 2 layers, d_model 32" in text and "| train | 1 |" in text and "| generate | 1 |" in text
    assert "dlkern alone" in text


def test_gpt_bench_validates_against_pytorch(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "gpt.md"
    assert run_bench("gpt", "--quick", "--threads", 1, "--repeats", 1, "--out", out) == 0
    text = out.read_text()
    assert "tokens/s" in text and "dlkern/PyTorch" in text
    assert "logits" in text and "loss_and_grads" in text and "generate_tokens_equal 1.0e+00" in text


def test_gpt_validation_catches_a_wrong_twin():
    torch = pytest.importorskip("torch")
    gpt = load_benchmark("gpt")
    config, batch, _ = gpt.QUICK
    model = gpt.build_dlkern(config)
    twin = gpt.build_torch(torch, model)
    with torch.no_grad():
        twin.blocks[0].mlp[0].weight.mul_(1.01)
    with pytest.raises(common.BenchValidationError, match="disagree"):
        gpt.validate(torch, model, twin, *gpt.make_batch(config, batch))


def test_train_bench_quick_without_torch(tmp_path):
    out = tmp_path / "train.md"
    assert run_bench("train", "--quick", "--no-torch", "--models", "mlp", "--threads", 1, "--repeats", 1,
                     "--out", out) == 0
    text = out.read_text()
    assert "| mlp | 1 |" in text and "MLP 784-256-256-10 batch 8" in text and "dlkern time in kernels" in text


def test_train_bench_validates_against_pytorch(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "train.md"
    assert run_bench("train", "--quick", "--models", "mlp,lenet", "--threads", 1, "--repeats", 1, "--out", out) == 0
    text = out.read_text()
    for model in ("mlp", "lenet"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {model} | 1 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3] != "-" and float(cells[-1]) < 1e-3  # PyTorch timed, check passed


def test_train_validation_catches_different_weights():
    torch = pytest.importorskip("torch")
    train = load_benchmark("train")
    model, opt, shape = train.build_dlkern("mlp", 8)
    twin, twin_opt = train.build_torch(torch, "mlp", model)
    with torch.no_grad():
        next(twin.parameters()).add_(0.05)
    with pytest.raises(common.BenchValidationError, match="disagree"):
        train.validate("mlp", torch, (model, opt), (twin, twin_opt), *train.make_batch(shape))


@pytest.mark.parametrize("name", ["charlstm", "chargru"])
def test_char_lm_twin_agrees_and_its_validation_catches_a_changed_weight(name):
    """The character LSTM/GRU rows: the PyTorch twin loads RNNLM's state_dict and one
    AdamW step agrees; a perturbed recurrent weight is refused."""
    torch = pytest.importorskip("torch")
    train = load_benchmark("train")
    model, opt, shape = train.build_dlkern(name, 2)
    x, y = train.make_batch(shape)
    assert x.shape == y.shape == (2, train.LM_BLOCK) and (x[:, 1:] == y[:, :-1]).all()
    twin, twin_opt = train.build_torch(torch, name, model)
    assert train.validate(name, torch, (model, opt), (twin, twin_opt), x, y) < 1e-3
    model, opt, _ = train.build_dlkern(name, 2)
    twin, twin_opt = train.build_torch(torch, name, model)
    with torch.no_grad():
        twin.rnn.weight_hh_l1.mul_(1.05)
    with pytest.raises(common.BenchValidationError, match="disagree"):
        train.validate(name, torch, (model, opt), (twin, twin_opt), x, y)


def test_unknown_train_model_is_an_error():
    with pytest.raises(SystemExit, match="unknown model"):
        run_bench("train", "--models", "resnet")


def test_rnn_validation_catches_a_wrong_gate_gradient():
    """The recurrent-cell rows validate every output: a backward whose forget-gate block
    drops its c_prev factor is refused."""
    case = cases("rnn").rnn_case("lstm", "backward", 4, 9)

    def wrong(inputs):
        dgates, dc_prev = dlkern.ops.lstm_cell_backward(*(inputs[f"a{k}"] for k in range(5)))
        h = inputs["a0"].shape[1]
        c_prev = np.where(inputs["a3"] == 0, 1, inputs["a3"])
        return np.concatenate([dgates[:, :h], dgates[:, h:2 * h] / c_prev, dgates[:, 2 * h:]], axis=1), dc_prev

    assert_caught(case, lambda i: dlkern.ops.lstm_cell_backward(*(i[f"a{k}"] for k in range(5))), wrong)


def test_rnn_module_validation_catches_swapped_gate_gradients():
    """The module rows validate every parameter's gradient: input and forget gate rows of
    one weight gradient swapped (a gate-order slip) are refused."""
    case = cases("rnn").module_case("LSTM", "forward+backward", 3, 5, 6, 7, 2)
    run = case.libs["dlkern"]
    index = 2 + cases("rnn")._param_names(2).index("weight_ih_l1")

    def wrong(inputs):
        got = [harness.as_numpy(g).copy() for g in run(inputs, None)()]
        got[index] = np.concatenate([got[index][7:14], got[index][:7], got[index][14:]])
        return tuple(got)

    assert_caught(case, lambda i: run(i, None)(), wrong, "dweight_ih_l1 is WRONG")


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_rnn_module_rows_validate_pytorch_with_the_same_weights(mode):
    torch = pytest.importorskip("torch")
    args = argparse.Namespace(peers=["torch"], repeats=1, min_sample_ms=1.0, settle_ms=0.0)
    for op in ("forward", "forward+backward"):
        result = harness.bench_case(cases("rnn").module_case(mode, op, 3, 4, 5, 6, 2), 1, args, torch)
        assert set(result.timings) == {"dlkern", "torch"}
