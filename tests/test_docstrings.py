"""The ``>>>`` examples in the package's docstrings run and print what they say.

Every module of ``fedalign`` is collected; a module whose optional dependency (torch for
``fedalign.sim``, flwr for ``fedalign.flower``, nvflare for ``fedalign.nvflare``) is missing
is skipped, as the package itself would not import it.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fedalign


def _modules() -> list[str]:
    names = [fedalign.__name__]
    for info in pkgutil.walk_packages(fedalign.__path__, prefix="fedalign."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra is not installed
        pytest.skip(f"{name}: {exc}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
