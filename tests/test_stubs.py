"""python/dlkern/_C.pyi, the stub editors read for the compiled module, stays complete.

A kernel bound in csrc/bind/ without rerunning tools/gen_stubs.sh fails here: every
public or private name of dlkern._C must be in the stub, with the parameter names its
pybind11 signature has, and the stub must name nothing the module lacks.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

import dlkern
from dlkern import _C

PKG = pathlib.Path(dlkern.__file__).parent
STUB = PKG / "_C.pyi"
REGEN = "stale python/dlkern/_C.pyi: rerun tools/gen_stubs.sh"


def stub_tree() -> ast.Module:
    assert STUB.is_file(), f"{STUB} missing: run tools/gen_stubs.sh"
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def stub_names(tree: ast.Module) -> dict:
    """Top-level name -> its node (functions, classes, annotated constants)."""
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id != "__all__":
                names[node.target.id] = node
    return names


def module_names() -> set:
    return {n for n in dir(_C) if not (n.startswith("__") and n.endswith("__"))}


def split_top_level(params: str) -> list:
    """'a: list[int], b: object = (1, 2)' -> ['a: list[int]', 'b: object = (1, 2)']."""
    parts, depth, cur = [], 0, ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def signature_params(func) -> list:
    """Parameter names from a pybind11 function's generated signature line(s)."""
    doc = func.__doc__ or ""
    name = func.__name__
    # One line per overload ("1. name(...)" when overloaded); take the first.
    m = re.search(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> ", doc, flags=re.M)
    assert m, f"no pybind11 signature line in {name}.__doc__"
    return [p.split(":")[0].split("=")[0].strip().lstrip("*") for p in split_top_level(m.group(1))]


def test_every_module_name_is_in_the_stub():
    names = stub_names(stub_tree())
    missing = sorted(module_names() - set(names))
    assert not missing, f"{REGEN} (dlkern._C has {missing} that the stub lacks)"


def test_stub_names_nothing_the_module_lacks():
    names = stub_names(stub_tree())
    extra = sorted(set(names) - module_names())
    assert not extra, f"{REGEN} (the stub has {extra} that dlkern._C lacks)"


def test_stub_all_matches_the_module_public_names():
    tree = stub_tree()
    declared = None
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "__all__":
            declared = set(ast.literal_eval(node.value))
    public = {n for n in module_names() if not n.startswith("_")}
    assert declared == public, REGEN


def test_stub_parameters_match_the_bindings():
    names = stub_names(stub_tree())
    checked = 0
    for name in sorted(module_names()):
        obj = getattr(_C, name)
        node = names.get(name)
        if not callable(obj) or isinstance(obj, type) or not isinstance(node, ast.FunctionDef):
            continue
        stub_args = node.args
        stub_params = [a.arg for a in stub_args.posonlyargs + stub_args.args + stub_args.kwonlyargs]
        if stub_args.vararg:
            stub_params.append(stub_args.vararg.arg)
        if stub_args.kwarg:
            stub_params.append(stub_args.kwarg.arg)
        bound = [p for p in signature_params(obj) if p not in ("", "/")]
        assert stub_params == bound, f"{REGEN} ({name}: stub {stub_params}, binding {bound})"
        checked += 1
    assert checked >= 50, f"only {checked} functions compared"


def test_stub_is_valid_for_the_oldest_supported_python():
    # The package supports Python 3.9: the stub parses with 3.9's grammar.
    ast.parse(STUB.read_text(encoding="utf-8"), feature_version=(3, 9))


def test_package_is_marked_typed():
    # PEP 561: without py.typed, type checkers ignore the package's annotations and stub.
    assert (PKG / "py.typed").is_file()


def test_signature_parser():
    assert split_top_level("a: list[int], b: object = (1, 2)") == ["a: list[int]", " b: object = (1, 2)"]

    def f():
        pass

    f.__doc__ = "f(x: int, y: dict[str, int] = {}) -> None\n\ntext"
    assert signature_params(f) == ["x", "y"]
    f.__doc__ = "no signature"
    with pytest.raises(AssertionError):
        signature_params(f)
