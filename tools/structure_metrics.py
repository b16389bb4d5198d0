#!/usr/bin/env python3
"""Print the structure metrics of issue 12 for the tree this script lives in (or --root).

- import cycles among dlkern modules: from module-level imports (the import-time ones),
  and again with function-local imports added (the cycles the issue counts);
- function-local imports of dlkern modules (target: <= 10);
- the largest package modules (flagged over 600 lines);
- lines of benchmark code inside the package (python/dlkern/bench);
- per-ISA translation units (csrc/cpu/*_{generic,avx2,avx512,avx512bf16}.cpp, isa_*.cpp) and *_isa.h headers;
- CPU vs CUDA binding lines (csrc/bind: cuda_* against the rest).

Static analysis only (ast), so it needs no build and imports nothing from dlkern.
"""

import argparse
import ast
import os
import re
import sys
from pathlib import Path

PACKAGE = "dlkern"
MAX_LINES = 600


def module_name(path, package_dir):
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(importer, is_package, level, target):
    """The absolute module name of `from <level dots><target> import ...` in `importer`."""
    if level == 0:
        return target
    base = importer.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports(tree, name, is_package, modules, extensions=()):
    """(module-level imports, function-local imports) of dlkern modules: lists of
    (line, imported module). `from pkg import sub` counts as importing pkg.sub when sub is
    a module, else pkg."""
    top, local = [], []

    def targets(node):
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = resolve(name, is_package, node.level, node.module or "")
        out = []
        for alias in node.names:
            sub = f"{base}.{alias.name}" if base else alias.name
            out.append(sub if sub in modules or sub in extensions else base)
        return out

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for t in targets(child):
                    if t == PACKAGE or t.startswith(PACKAGE + "."):
                        (local if in_function else top).append((child.lineno, t))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            else:
                visit(child, in_function)

    visit(tree, False)
    return top, local


def known(target, modules):
    """The nearest existing module for an import target (a name inside a module -> the module)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target


def find_cycles(graph):
    """Strongly connected components with more than one module (or a self-import): Tarjan."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def strongconnect(v):
        # iterative Tarjan: (node, iterator over its successors)
        work = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or node in graph.get(node, ()):
                    out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def line_count(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(1 for _ in f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--top", type=int, default=10, help="how many of the largest modules to list")
    args = parser.parse_args()
    root = args.root
    package_dir = root / "python" / PACKAGE
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, package_dir): p for p in files}
    # The compiled extensions are leaves (they import no dlkern module), built or not.
    extensions = {f"{PACKAGE}._C", f"{PACKAGE}._C_cuda"}
    extensions |= {f"{PACKAGE}.{p.name.split('.')[0]}" for p in package_dir.glob("*.so")}

    graph, full_graph, local_imports = {}, {}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        top, local = imports(tree, name, path.name == "__init__.py", modules, extensions)
        # Importing a submodule always imports its parent packages first, so an edge to
        # one's own package (`from . import x` inside it, or `import dlkern` in dlkern.x)
        # cannot start a cycle by itself; extensions are leaves.
        skip = {name, ""} | {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        edges = {known(t, modules) for _, t in top if t not in extensions} - skip
        local_edges = {known(t, modules) for _, t in local if t not in extensions} - skip
        graph[name] = edges
        full_graph[name] = edges | local_edges
        # one per import statement (as `grep` counts them), naming what it imports
        statements = {}
        for line, t in local:
            statements.setdefault(line, []).append(t)
        local_imports += [(path.relative_to(root), line, "/".join(sorted(set(ts))))
                          for line, ts in sorted(statements.items())]

    for title, g in (("module-level imports: import-time cycles", graph),
                     ("module-level and function-local imports", full_graph)):
        cycles = find_cycles(g)
        print(f"== import cycles among dlkern modules ({title}): {len(cycles)}")
        for comp in cycles:
            print("  cycle: " + " <-> ".join(comp))
            for a in comp:
                for b in sorted(g[a] & set(comp)):
                    print(f"      {a} -> {b}")

    print(f"\n== function-local imports of dlkern modules: {len(local_imports)} statements (target <= 10)")
    by_file = {}
    for path, line, target in local_imports:
        by_file.setdefault(str(path), []).append(f"{line}:{target}")
    for path in sorted(by_file):
        print(f"  {path}: {len(by_file[path])}  ({', '.join(by_file[path])})")

    sizes = sorted(((line_count(p), p.relative_to(root)) for p in files), reverse=True)
    over = [s for s in sizes if s[0] > MAX_LINES]
    print(f"\n== largest package modules ({len(over)} over {MAX_LINES} lines)")
    for n, p in sizes[:args.top]:
        print(f"  {n:6d}  {p}{'  <-- over ' + str(MAX_LINES) if n > MAX_LINES else ''}")

    bench_dir = package_dir / "bench"
    bench_lines = sum(line_count(p) for p in bench_dir.rglob("*.py")) if bench_dir.is_dir() else 0
    package_lines = sum(n for n, _ in sizes)
    share = 100.0 * bench_lines / package_lines if package_lines else 0.0
    print(f"\n== benchmark code inside the package (python/{PACKAGE}/bench): {bench_lines} lines "
          f"({share:.0f}% of {package_lines}; target <= 1500)")

    cpu = root / "csrc" / "cpu"
    isa_tu = re.compile(r"(_(generic|avx2|avx512|avx512bf16)|^isa_.*)\.cpp$")
    tus = sorted(p.name for p in cpu.rglob("*.cpp") if isa_tu.search(p.name)) if cpu.is_dir() else []
    isa_h = sorted(p.name for p in cpu.rglob("*_isa.h")) if cpu.is_dir() else []
    print(f"\n== per-ISA translation units in csrc/cpu: {len(tus)} (target <= 4)")
    print("  " + " ".join(tus))
    print(f"== *_isa.h headers in csrc/cpu: {len(isa_h)} (target <= 1)")
    print("  " + " ".join(isa_h))

    bind = root / "csrc" / "bind"
    cuda_lines = cpu_lines = 0
    if bind.is_dir():
        for p in bind.iterdir():
            if p.suffix in (".cpp", ".h", ".cc", ".cu", ".hpp"):
                if p.name.startswith("cuda_"):
                    cuda_lines += line_count(p)
                else:
                    cpu_lines += line_count(p)
    ratio = cuda_lines / cpu_lines if cpu_lines else float("nan")
    print(f"\n== binding lines (csrc/bind): CUDA {cuda_lines}, CPU {cpu_lines}, ratio {ratio:.2f} (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
