"""The documentation site: every public name has an API entry; the site builds strictly.

The build runs ``mkdocs build --strict`` (the command ``make docs`` runs): a broken link, a
missing anchor, a page left out of the navigation or a docstring griffe cannot parse fails
it. The built inventory (``objects.inv``) must list ``fedalign.<name>`` for every name of
``fedalign.__all__``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import fedalign

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"


def _documented() -> set[str]:
    """Identifiers the API pages render (``::: fedalign.X`` directives)."""
    found: set[str] = set()
    for page in API.glob("*.md"):
        found.update(re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), flags=re.M))
    return found


def test_every_public_name_has_an_api_entry():
    documented = _documented()
    missing = [n for n in fedalign.__all__ if f"fedalign.{n}" not in documented]
    assert missing == []


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    pages = [p for p in pages if not p.startswith("_")]
    assert [p for p in pages if p not in nav] == []


def _inventory(path: Path) -> set[str]:
    head, _, body = path.read_bytes().partition(b"zlib.\n")
    assert b"Sphinx inventory" in head
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines()}


@pytest.mark.slow
def test_the_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    names = _inventory(site / "objects.inv")
    assert [n for n in fedalign.__all__ if f"fedalign.{n}" not in names] == []
    for page in ("index.html", "nvflare/index.html", "api/scheduler/index.html"):
        assert (site / page).exists(), page
    scheduler = (site / "api" / "scheduler" / "index.html").read_text(encoding="utf-8")
    assert 'id="fedalign.Scheduler"' in scheduler and "Parameters" in scheduler
