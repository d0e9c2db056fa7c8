"""Layers: imports point down ``rounds`` -> ``bench`` -> ``sim`` -> ``flower`` / ``nvflare`` only.

* ``fedalign.sim`` never imports ``fedalign.flower`` or ``fedalign.nvflare``;
* the core round driver ``fedalign.rounds`` imports neither torch nor flwr nor any adapter;
* the Flower strategy and wire format (``flower/strategy.py``, ``flower/records.py``) do not
  import ``fedalign.sim``: they run on the core alone;
* ``nvflare`` is imported by ``fedalign.nvflare`` only, whose controller and wire format do
  not import ``fedalign.sim`` either; ``import fedalign`` loads no framework at all.

Each is checked statically (no import statement, lazy ones included, names the forbidden
module) and at run time in a fresh interpreter, so that no other test's imports are in
``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fedalign.rounds
import fedalign.sim

SIM = Path(fedalign.sim.__file__).parent
PACKAGE = SIM.parent
ROUNDS = Path(fedalign.rounds.__file__).parent


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


def _under(names: list[str], prefixes: list[str]) -> list[str]:
    """The names equal to, or inside, one of ``prefixes`` (dotted module names)."""
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]


def _imports_of(path: Path) -> list[str]:
    package = ".".join(["fedalign", *path.parent.relative_to(PACKAGE).parts])
    return _imported(path.read_text(), package)


def test_the_static_check_resolves_relative_imports():
    source = "from ..flower import engine\nfrom . import server\nimport fedalign.flower.engine\n"
    assert _flower(_imported(source, "fedalign.sim")) == [
        "fedalign.flower",
        "fedalign.flower.engine",
        "fedalign.flower.engine",
    ]
    assert _flower(_imported("from .flower import engine\n", "fedalign.sim")) == []
    lazy = "def f():\n    from ..sim.aggregate import aggregate_partial\n"
    assert _under(_imported(lazy, "fedalign.flower"), ["fedalign.sim"]) == [
        "fedalign.sim.aggregate",
        "fedalign.sim.aggregate.aggregate_partial",
    ]
    assert _under(["torchvision", "torch.nn", "fedalign.simx"], ["torch", "fedalign.sim"]) == [
        "torch.nn"
    ]


def test_no_import_statement_in_sim_names_fedalign_flower():
    found = {}
    for path in sorted(SIM.rglob("*.py")):
        package = ".".join(["fedalign", *path.parent.relative_to(SIM.parent).parts])
        if bad := _flower(_imported(path.read_text(), package)):
            found[str(path.relative_to(SIM))] = bad
    assert found == {}


def test_no_import_statement_in_sim_names_fedalign_nvflare():
    found = {}
    for path in sorted(SIM.rglob("*.py")):
        if bad := _under(_imports_of(path), ["fedalign.nvflare"]):
            found[str(path.relative_to(SIM))] = bad
    assert found == {}


def test_only_fedalign_nvflare_imports_nvflare():
    """NVIDIA FLARE stays inside its adapter: no other module names it, lazily or not."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "nvflare":
            continue
        if bad := _under(_imports_of(path), ["nvflare"]):
            found[str(path.relative_to(PACKAGE))] = bad
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


# ------------------------------------------------------------------ the core round driver

ABOVE_ROUNDS = [
    "torch",
    "flwr",
    "nvflare",
    "ray",
    "fedalign.bench",
    "fedalign.sim",
    "fedalign.flower",
    "fedalign.nvflare",
    "fedalign.cli",
]


def test_no_import_statement_in_rounds_names_torch_flwr_or_an_adapter():
    found = {}
    for path in sorted(ROUNDS.rglob("*.py")):
        if bad := _under(_imports_of(path), ABOVE_ROUNDS):
            found[path.name] = bad
    assert found == {}


ROUNDS_SCRIPT = """
import sys
import numpy as np
import fedalign as fa
from fedalign.rounds import Reply, RoundDriver
sched = fa.Scheduler(2, solver="flow", seed=0)
for c in range(3):
    sched.register(c, fa.ClientProfile())
state = {"gate": np.zeros(2), "experts.0.w": np.zeros(1), "experts.1.w": np.zeros(1)}
def train(client, experts, payload):
    return Reply({k: v + 1 for k, v in payload.items()}, fa.Feedback(samples=3))
new, summary = RoundDriver(sched).run_round(range(3), state, train)
assert summary.completed == [0, 1, 2], summary
heavy = ("torch", "flwr", "ray", "nvflare", "fedalign.sim", "fedalign.flower", "fedalign.nvflare", "fedalign.bench")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(heavy[4:])))
"""


def test_a_round_through_the_driver_imports_neither_torch_nor_flwr():
    done = subprocess.run(
        [sys.executable, "-c", ROUNDS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"], done.stdout


# ------------------------------------------------------------------ Flower on the core

FLOWER_CORE = ["strategy.py", "records.py"]


def test_flower_strategy_and_records_import_nothing_from_sim():
    flower = PACKAGE / "flower"
    found = {}
    for name in FLOWER_CORE:
        if bad := _under(_imports_of(flower / name), ["fedalign.sim"]):
            found[name] = bad
    assert found == {}


FLOWER_SCRIPT = """
import sys
import fedalign.flower
from fedalign.flower import FedAlign, RoundRecord, expert_of_key
print(sorted(m for m in sys.modules if m == "torch" or m.startswith(("fedalign.sim", "torch."))))
"""


def test_importing_fedalign_flower_loads_neither_sim_nor_torch():
    pytest.importorskip("flwr")
    done = subprocess.run(
        [sys.executable, "-c", FLOWER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"], done.stdout


# ------------------------------------------------------------------ NVFlare on the core

NVFLARE_CORE = ["controller.py", "wire.py", "__init__.py"]


def test_nvflare_controller_and_wire_import_nothing_from_sim():
    nvflare = PACKAGE / "nvflare"
    found = {}
    for name in NVFLARE_CORE:
        if bad := _under(_imports_of(nvflare / name), ["fedalign.sim", "fedalign.flower"]):
            found[name] = bad
    assert found == {}


NVFLARE_SCRIPT = """
import sys
import fedalign
core = sorted(m for m in sys.modules if m.split(".")[0] == "nvflare")
import fedalign.nvflare
from fedalign.nvflare import FedAlignController, read_reply, run_site, wire
print(core, sorted(m for m in sys.modules if m == "torch" or m.startswith(("fedalign.sim", "torch.", "flwr"))))
"""


def test_importing_fedalign_nvflare_loads_neither_sim_nor_torch():
    pytest.importorskip("nvflare")
    done = subprocess.run(
        [sys.executable, "-c", NVFLARE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "[]"], done.stdout
