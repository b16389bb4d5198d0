"""MkDocs hooks for dlkern's site.

- on_files: every file in bench/results (the committed benchmark reports and their
  PNG charts) becomes part of the site under benchmarks/results/, so the reports and
  their images need no copy in docs/ that could drift from the originals.
- on_page_markdown: in benchmarks.md, ``<!-- bench-reports -->`` becomes a table of the
  reports (title and link); in cli.md, ``<!-- help: ARGS -->`` becomes the output of
  ``python -m dlkern ARGS --help``, so the page always shows the CLI that was built.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SITE_DIR = "benchmarks/results"


def _reports():
    return sorted(RESULTS.glob("*.md")) if RESULTS.is_dir() else []


def on_files(files, config):
    if not RESULTS.is_dir():
        return files
    for path in sorted(RESULTS.iterdir()):
        if path.suffix in (".md", ".png", ".txt") and path.is_file():
            files.append(File.generated(config, f"{SITE_DIR}/{path.name}", abs_src_path=str(path)))
    return files


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def _reports_table() -> str:
    rows = ["| report | file |", "|---|---|"]
    for path in _reports():
        title = _title(path).replace("|", "\\|")
        rows.append(f"| [{title}]({SITE_DIR}/{path.name}) | `bench/results/{path.name}` |")
    return "\n".join(rows)


def _help(args: str) -> str:
    # The same interpreter and environment as the build, so the help comes from the
    # dlkern that the API pages document (installed, or on PYTHONPATH).
    # `bench` lists the case tables of this checkout's bench/cases, not the copy an
    # installed dlkern ships, so the page matches the sources it is built from.
    env = dict(os.environ, COLUMNS="88", DLKERN_BENCH_CASES=str(ROOT / "bench" / "cases"))
    out = subprocess.run([sys.executable, "-m", "dlkern", *args.split(), "--help"], capture_output=True,
                         text=True, env=env, timeout=120, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"docs: `python -m dlkern {args} --help` failed:\n{out.stderr}")
    return f"```text\n{out.stdout.rstrip()}\n```"


_HELP = re.compile(r"<!-- help:\s*([^>]*?)\s*-->")


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "benchmarks.md":
        markdown = markdown.replace("<!-- bench-reports -->", _reports_table())
    if page.file.src_uri == "cli.md":
        markdown = _HELP.sub(lambda m: _help(m.group(1)), markdown)
    return markdown
