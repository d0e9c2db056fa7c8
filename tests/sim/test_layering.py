"""``fedalign.sim`` sits below ``fedalign.flower`` (DESIGN.md section 3): it never imports it.

Checked twice: statically (no import statement anywhere in the package, lazy ones included,
names ``fedalign.flower``), and at run time in a fresh interpreter, so that no other test's
imports are in ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fedalign.sim

SIM = Path(fedalign.sim.__file__).parent


def _imported(source: str, package: str) -> list[str]:
    """Absolute names that the import statements of ``source`` (a module of ``package``) name."""
    parts = package.split(".")
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names += [module, *(f"{module}.{a.name}" for a in node.names)]
    return names


def _flower(names: list[str]) -> list[str]:
    return [n for n in names if n.split(".")[:2] == ["fedalign", "flower"]]


def test_the_static_check_resolves_relative_imports():
    source = "from ..flower import engine\nfrom . import server\nimport fedalign.flower.engine\n"
    assert _flower(_imported(source, "fedalign.sim")) == [
        "fedalign.flower",
        "fedalign.flower.engine",
        "fedalign.flower.engine",
    ]
    assert _flower(_imported("from .flower import engine\n", "fedalign.sim")) == []


def test_no_import_statement_in_sim_names_fedalign_flower():
    found = {}
    for path in sorted(SIM.rglob("*.py")):
        package = ".".join(["fedalign", *path.parent.relative_to(SIM.parent).parts])
        if bad := _flower(_imported(path.read_text(), package)):
            found[str(path.relative_to(SIM))] = bad
    assert found == {}


SCRIPT = """
import sys
from fedalign.sim.config import preset
from fedalign.sim.experiments import run_experiment
after_import = sorted(m for m in sys.modules if m.split(".")[:2] == ["fedalign", "flower"])
res = run_experiment(preset("tiny", rounds=1), ["greedy"], [0], progress=False, plots=False)
assert res["config"]["engine"] == "local", res["config"]
after_run = sorted(m for m in sys.modules if m.split(".")[:2] == ["fedalign", "flower"])
print(after_import, after_run)
"""


def test_sim_experiments_never_import_fedalign_flower():
    pytest.importorskip("torch")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "[]"], done.stdout
