"""Package metadata a user (and PyPI) sees: licence, classifiers, URLs, typing marker.

Read from the installed distribution's metadata when dlkern is installed (CI's venvs),
else from pyproject.toml (a source checkout run with PYTHONPATH), so both forms are checked.
"""

from __future__ import annotations

import importlib.metadata as md
import pathlib
import sys

import pytest

import dlkern

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PKG = pathlib.Path(dlkern.__file__).parent

REQUIRED_CLASSIFIERS = {
    "Programming Language :: C++",
    "Programming Language :: Python :: 3",
    "Operating System :: POSIX :: Linux",
    "Intended Audience :: Science/Research",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
    "Typing :: Typed",
}
URL_LABELS = {"Homepage", "Documentation", "Source", "Issues"}


def load_pyproject() -> dict:
    if sys.version_info < (3, 11):
        tomllib = pytest.importorskip("tomli")
    else:
        import tomllib
    if not PYPROJECT.is_file():
        pytest.skip("no pyproject.toml beside the tests (installed tests only)")
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)


def pyproject() -> dict:
    return load_pyproject()["project"]


def installed_distribution():
    """The installed dlkern distribution, if the imported dlkern is its (non-editable) files."""
    try:
        dist = md.distribution("dlkern")
    except md.PackageNotFoundError:
        return None
    init = pathlib.Path(str(dist.locate_file("dlkern/__init__.py")))
    # A checkout on PYTHONPATH or an editable install: another dlkern's metadata, or none.
    if not init.is_file() or init.resolve() != pathlib.Path(dlkern.__file__).resolve():
        return None
    return dist


def test_pyproject_license_is_an_spdx_expression_with_its_file():
    project = pyproject()
    assert project["license"] == "MIT"  # PEP 639: a string, not the legacy table
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the dlkern authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_pyproject_classifiers_and_urls():
    project = pyproject()
    classifiers = set(project["classifiers"])
    assert REQUIRED_CLASSIFIERS <= classifiers, REQUIRED_CLASSIFIERS - classifiers
    # Every Python version a classifier names is allowed by requires-python (>= 3.9).
    versions = [c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")]
    assert versions and all(tuple(map(int, v.split("."))) >= (3, 9) for v in versions)
    assert project["requires-python"] == ">=3.9"
    # No license classifier next to an SPDX expression: PEP 639 forbids both.
    assert not any(c.startswith("License ::") for c in classifiers)
    assert set(project["urls"]) == URL_LABELS
    assert all(u.startswith("https://") for u in project["urls"].values())


def test_build_requirements_support_pep_639():
    requires = load_pyproject()["build-system"]["requires"]
    # scikit-build-core writes PEP 639's License-Expression from 0.11 on.
    assert "scikit-build-core>=0.11" in requires


def test_installed_metadata():
    dist = installed_distribution()
    if dist is None:
        pytest.skip("dlkern is imported from a source tree, not an installed distribution")
    meta = dist.metadata
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert REQUIRED_CLASSIFIERS <= set(meta.get_all("Classifier") or [])
    urls = {u.split(",", 1)[0].strip() for u in meta.get_all("Project-URL") or []}
    assert URL_LABELS <= urls
    assert float(meta["Metadata-Version"]) >= 2.4  # PEP 639's metadata version


def test_package_ships_typing_marker_and_stub():
    assert (PKG / "py.typed").is_file()
    assert (PKG / "_C.pyi").is_file()
    dist = installed_distribution()
    if dist is not None:  # installed from a wheel: both files are in its RECORD
        files = {str(f).replace("\\", "/") for f in dist.files or []}
        assert "dlkern/py.typed" in files and "dlkern/_C.pyi" in files
