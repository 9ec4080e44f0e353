"""The one-way house (issue 21): every import of the package, lazy ones inside functions included,
goes to the module's own stage or an earlier one of `zoomstudy.STAGES`, and no modules import each
other in a cycle. Read from the source (ast), so an import that only runs on some path counts too."""
from __future__ import annotations

import ast
from pathlib import Path

import zoomstudy

PACKAGE = Path(zoomstudy.__file__).resolve().parent
STAGE = {name: i for i, names in enumerate(zoomstudy.STAGES) for name in names}


def _module(path: Path) -> str:
    parts = ("zoomstudy",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported zoomstudy module) for every import statement of the file, at any depth."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from zoomstudy import study" imports the module zoomstudy.study
            out += [(node.lineno, f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target)
                    for a in node.names]
    return [(line, t) for line, t in out if t == "zoomstudy" or t.startswith("zoomstudy.")]


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {_module(f) for f in FILES}


def _stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGE.get(parts[1]) if len(parts) > 1 else None


def test_every_top_level_module_has_a_stage():
    tops = {_module(f).split(".")[1] for f in FILES if _module(f) != "zoomstudy"}
    assert tops <= set(STAGE), f"modules without a stage in zoomstudy.STAGES: {sorted(tops - set(STAGE))}"


def test_no_import_goes_to_a_later_stage():
    bad = []
    for f in FILES:
        here = _stage(_module(f))
        for line, target in _imports(f):
            there = _stage(target)
            if here is not None and there is not None and there > here:
                bad.append(f"{f.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = {m: set() for m in MODULES}
    for f in FILES:
        for _, target in _imports(f):
            while target not in MODULES and "." in target:  # "zoomstudy.x.attr" -> module zoomstudy.x
                target = target.rpartition(".")[0]
            if target != _module(f) and target != "zoomstudy":
                graph[_module(f)].add(target)
    # a package's __init__ importing its own sub-modules is how packages re-export: not a cycle
    for m in graph:
        graph[m] = {t for t in graph[m] if not (t.startswith(m + ".") and m in {_module(f) for f in FILES
                                                                                   if f.name == "__init__.py"})}
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The walk is not blind: an upward import inside a function, and a relative one, are found."""
    fake = PACKAGE / "data" / "_probe.py"  # never written: _imports reads the text we give it
    text = "def f():\n    from zoomstudy.report import plots\n\nfrom ..sweep import store\n"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: text)
    assert sorted(t for _, t in _imports(fake)) == ["zoomstudy.report.plots", "zoomstudy.sweep.store"]
