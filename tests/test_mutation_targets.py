"""tools/mutation_check.py breaks the package on purpose by exact string replacement;
this keeps its table honest in the ordinary test run: when a refactor moves or rewrites
one of its target strings, this fails and names the row to update (the mutation run
itself, minutes long, is run by hand: see the script's docstring)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_mutation_target_is_found():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    assert len(mc.MUTANTS) >= 6
    assert mc.target_problems(ROOT) == []
