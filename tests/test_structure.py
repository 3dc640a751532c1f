"""The package structure keeps the data flow: a package imports only the ones before it.

faces -> data -> models -> training -> segment -> refiner -> convert -> metrics, with shared pieces
(media, imaging, identity, provenance, errors, atomic writes, ...) below all of them and the
command and studio layers on top. Function-level imports count too: a cycle hidden in a
function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "intracoder"
FLOW = ["faces", "data", "models", "training", "segment", "refiner", "convert", "metrics"]
SHARED = {"errors", "atomic", "quiet", "progress", "config", "media", "imaging", "identity",
          "provenance", "samples", "__init__"}
TOP = {"commands", "cli", "demo", "studio", "__main__"}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "intracoder":
                found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def _allowed(src: str, dst: str) -> bool:
    if src in TOP or dst == src:
        return True
    if src in SHARED:
        return dst in SHARED
    return dst in SHARED or (dst in FLOW and FLOW.index(dst) < FLOW.index(src))


def test_every_package_is_known():
    packages = {_package(p) for p in ROOT.rglob("*.py")}
    assert packages <= set(FLOW) | SHARED | TOP, packages - set(FLOW) - SHARED - TOP


def test_no_package_imports_one_after_it():
    wrong = sorted(f"{p.relative_to(ROOT.parent)} imports intracoder.{dst}"
                   for p in ROOT.rglob("*.py") for dst in _imports(p)
                   if not _allowed(_package(p), dst))
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from intracoder.metrics.identity import embed\n")
    assert _imports(module) == {"metrics"}
    assert not _allowed("faces", "metrics") and _allowed("metrics", "faces")
