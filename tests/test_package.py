"""The package as a user gets it: wheel and sdist build, the core installs and runs alone,
each extra imports its adapter, one version everywhere.

The wheel test builds fedalign with ``python -m build``, installs the wheel *without extras*
into a fresh virtual environment (pip resolves only the core's numpy, scipy, OR-Tools, PuLP
and HiGHS), checks that torch, flwr and nvflare are absent there, and runs ``fedalign solve
examples/small.json``, ``fedalign --version`` and the README's Python example.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import fedalign as fa

ROOT = Path(__file__).resolve().parents[1]


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_one_version_for_the_package_the_metadata_and_the_cli(capsys):
    from fedalign.cli import main

    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", fa.__version__)
    assert importlib.metadata.version("fedalign") == fa.__version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fedalign {fa.__version__}"


def test_the_changelog_names_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {fa.__version__}" in changelog


def test_the_readme_scheduler_example_prints_the_balanced_rounds_it_shows():
    """The Scheduler snippet runs after the first one and prints exactly the block below it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first, second = _readme_python_blocks()[:2]
    shown = re.search(r"```python\n" + re.escape(second) + r"```\n.*?```\n(.*?)```", text, re.DOTALL)
    assert shown is not None, "the README shows the Scheduler example's output below it"
    ran = subprocess.run(
        [sys.executable, "-W", "error::fedalign.HerdingWarning", "-c", first + second],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-3:] == shown.group(1).splitlines()


EXTRAS = {
    "sim": "import fedalign.sim.server, fedalign.sim.experiments",
    "flower": "import fedalign.flower; from fedalign.flower import FedAlign",
    "nvflare": "import fedalign.nvflare; from fedalign.nvflare import FedAlignController",
}


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_is_installed_and_imports_its_adapter(extra):
    """What ``pip install "fedalign[<extra>]"`` promises, checked in this environment."""
    requirements = importlib.metadata.requires("fedalign") or []
    marker = re.compile(rf"""extra\s*==\s*["']{extra}["']""")
    needed = [r for r in requirements if marker.search(r)]
    assert needed, f"no requirement declares the extra {extra!r}"
    for requirement in needed:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{name} (extra {extra}) is not installed here")
    done = subprocess.run(
        [sys.executable, "-c", EXTRAS[extra]], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_wheel_installs_and_runs_with_the_core_only(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert "Deprecat" not in output, output[-3000:]
    wheels = sorted(dist.glob("fedalign-*.whl"))
    assert [w.name for w in wheels] == [f"fedalign-{fa.__version__}-py3-none-any.whl"]
    assert (dist / f"fedalign-{fa.__version__}.tar.gz").exists()

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "fedalign"
    # nothing of this checkout or of the dev environment may leak into the fresh one
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheels[0])],
        capture_output=True,
        text=True,
        timeout=900,
        env=clean,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert "Deprecat" not in installed.stdout + installed.stderr

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # outside the repository, so that nothing but the installed wheel is importable
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean
        )

    absent = run(
        str(python),
        "-c",
        "import importlib.util as u; "
        "print([m for m in ('torch', 'flwr', 'nvflare', 'ray') if u.find_spec(m)])",
    )
    assert absent.returncode == 0 and absent.stdout.strip() == "[]", absent.stdout + absent.stderr

    version = run(str(cli), "--version")
    assert version.stdout.strip() == f"fedalign {fa.__version__}", version.stderr

    solved = run(str(cli), "solve", str(ROOT / "examples" / "small.json"))
    assert solved.returncode == 0, solved.stderr
    result = json.loads(solved.stdout)
    assert result["assignment"] and result["status"] in ("optimal", "feasible")

    example = _readme_python_blocks()[0]
    ran = run(str(python), "-c", example)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip(), "the README example prints the solver and its result"

    adapter = run(str(python), "-c", "import fedalign.nvflare")
    assert adapter.returncode != 0
    assert "pip install 'fedalign[nvflare]'" in adapter.stderr
