"""Runtime controls: thread count, ISA choice (set_isa and DLKERN_ISA), build_info."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dlkern
from helpers import num_threads, using_isa

ALL_ISAS = ["avx512", "avx2", "generic"]  # fastest first
UNSUPPORTED = [i for i in ALL_ISAS if i not in dlkern.supported_isas()]


def run_python(code, **env):
    """Run `code` in a fresh interpreter with extra environment variables."""
    full_env = dict(os.environ)
    full_env.pop("DLKERN_ISA", None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=600)  # a hang guard; a busy machine is slow


# ---------------------------------------------------------------------------- threads

def test_threads_fixture_sets_count(threads):
    assert dlkern.get_num_threads() == threads
    assert dlkern.build_info()["num_threads"] == threads


@pytest.mark.parametrize("n", [1, 3, 7])
def test_set_num_threads_roundtrip(n):
    with num_threads(n):
        assert dlkern.get_num_threads() == n
        assert dlkern.build_info()["num_threads"] == n
        # More threads than cores, or than work, must still give the right answer.
        a = np.arange(12, dtype=np.float64).reshape(3, 4)
        np.testing.assert_array_equal(dlkern.ops.matmul(a, a.T), a @ a.T)


@pytest.mark.parametrize("n", [0, -1, -100])
def test_set_num_threads_rejects_below_one(n):
    before = dlkern.get_num_threads()
    with pytest.raises(ValueError, match=rf"^set_num_threads: n must be >= 1, got {n}$"):
        dlkern.set_num_threads(n)
    assert dlkern.get_num_threads() == before


@pytest.mark.parametrize("n", [2.5, "2", None])
def test_set_num_threads_rejects_non_int(n):
    before = dlkern.get_num_threads()
    with pytest.raises(TypeError):
        dlkern.set_num_threads(n)
    assert dlkern.get_num_threads() == before


def test_default_threads_follow_omp_num_threads():
    proc = run_python("import dlkern; print(dlkern.get_num_threads())", OMP_NUM_THREADS="3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"


# ---------------------------------------------------------------------------- ISA

def test_supported_isas_order():
    supported = dlkern.supported_isas()
    assert supported, "no ISA path supported"
    assert supported == [i for i in ALL_ISAS if i in supported], "not fastest first"
    assert supported[-1] == "generic"


def test_isa_fixture_sets_path(isa):
    assert dlkern.get_isa() == isa
    assert dlkern.build_info()["isa_active"] == isa


def test_set_isa_switches_and_restores():
    start = dlkern.get_isa()
    for name in dlkern.supported_isas():
        with using_isa(name):
            assert dlkern.get_isa() == name
        assert dlkern.get_isa() == start


@pytest.mark.parametrize("name", ["bogus", "", "AVX-512"])
def test_set_isa_unknown_name(name):
    before = dlkern.get_isa()
    with pytest.raises(ValueError, match=rf"unknown ISA '{name}'; expected one of generic, avx2, avx512"):
        dlkern.set_isa(name)
    assert dlkern.get_isa() == before


def test_set_isa_non_string():
    with pytest.raises(TypeError):
        dlkern.set_isa(3)


@pytest.mark.skipif(not UNSUPPORTED, reason="this CPU supports every ISA path")
def test_set_isa_unsupported():
    before = dlkern.get_isa()
    with pytest.raises(RuntimeError, match=rf"ISA '{UNSUPPORTED[0]}' is not"):
        dlkern.set_isa(UNSUPPORTED[0])
    assert dlkern.get_isa() == before


@pytest.mark.parametrize("name", dlkern.supported_isas())
def test_dlkern_isa_env_forces_path(name):
    proc = run_python(f"""
        import numpy as np, dlkern
        info = dlkern.build_info()
        print(dlkern.get_isa(), info["isa_active"], info["isa_best"])
        a = np.arange(20, dtype=np.float32).reshape(4, 5)
        assert (dlkern.ops.matmul(a, a.T) == a @ a.T).all()
        dlkern.set_isa("generic")   # a forced path can still be changed at run time
        print(dlkern.get_isa())
    """, DLKERN_ISA=name)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0].split() == [name, name, dlkern.supported_isas()[0]]
    assert lines[1] == "generic"


def test_dlkern_isa_env_empty_means_best():
    proc = run_python("import dlkern; print(dlkern.get_isa())", DLKERN_ISA="")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == dlkern.supported_isas()[0]


def test_dlkern_isa_env_bogus_fails_import():
    proc = run_python("import dlkern", DLKERN_ISA="bogus")
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "unknown ISA 'bogus'" in proc.stderr


@pytest.mark.skipif(not UNSUPPORTED, reason="this CPU supports every ISA path")
def test_dlkern_isa_env_unsupported_fails_import():
    proc = run_python("import dlkern", DLKERN_ISA=UNSUPPORTED[0])
    assert proc.returncode != 0
    assert f"ISA '{UNSUPPORTED[0]}' is not" in proc.stderr


# ---------------------------------------------------------------------------- build_info

BUILD_INFO_KEYS = {"version", "compiler", "cxx_flags", "isa_compiled", "isa_supported",
                   "isa_best", "isa_active", "openmp", "num_threads", "cuda"}


def test_build_info_keys_and_types():
    info = dlkern.build_info()
    assert BUILD_INFO_KEYS <= set(info), f"missing {BUILD_INFO_KEYS - set(info)}"
    for key in ("version", "compiler", "cxx_flags", "isa_best", "isa_active", "openmp"):
        assert isinstance(info[key], str), key
    assert info["compiler"] and info["openmp"]
    assert isinstance(info["num_threads"], int)
    assert isinstance(info["isa_compiled"], list) and isinstance(info["isa_supported"], list)
    assert isinstance(info["cuda"], dict) and isinstance(info["cuda"]["built"], bool)


def test_build_info_consistency():
    info = dlkern.build_info()
    assert info["version"] == dlkern.__version__ == importlib.metadata.version("dlkern")
    assert set(info["isa_compiled"]) <= set(ALL_ISAS)
    assert set(info["isa_supported"]) <= set(info["isa_compiled"])
    assert "generic" in info["isa_supported"]
    assert info["isa_supported"] == dlkern.supported_isas()
    assert info["isa_best"] == dlkern.supported_isas()[0]
    assert info["isa_active"] == dlkern.get_isa()
    assert info["isa_active"] in info["isa_supported"]
    assert info["num_threads"] == dlkern.get_num_threads() >= 1
    if info["cuda"]["built"]:
        assert isinstance(info["cuda"]["available"], bool)


def test_build_info_is_a_fresh_dict():
    info = dlkern.build_info()
    info["version"] = "changed"
    info["cuda"]["built"] = "changed"
    again = dlkern.build_info()
    assert again["version"] == dlkern.__version__
    assert isinstance(again["cuda"]["built"], bool)
