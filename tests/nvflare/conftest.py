"""Fixtures for the NVFlare tests (helpers in :mod:`nvflare_helpers`; the test modules have
names of their own, ``test_nvflare_*``, so that they never shadow tests/flower's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

try:
    from nvflare_helpers import Harness, Responder, ToyController
except ModuleNotFoundError as exc:  # without the nvflare extra these tests are not collected
    if exc.name is None or exc.name.split(".")[0] != "nvflare":
        raise
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def harness() -> Callable[..., Harness]:
    """``harness(responder, **controller_kwargs)`` -> a :class:`Harness` of a ToyController."""

    def make(responder: Responder, *, delay: Callable[[str], float] | None = None, **kwargs: Any) -> Harness:
        h = Harness(ToyController(**kwargs), responder)
        if delay is not None:
            h.delay = delay
        return h

    return make
