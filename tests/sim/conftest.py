"""Fixtures shared by the harness tests."""

from __future__ import annotations

import pytest

from fedalign import Feedback


@pytest.fixture
def built_feedback(monkeypatch: pytest.MonkeyPatch) -> list[Feedback]:
    """Every :class:`fedalign.Feedback` built while the test runs, in order (the harness
    builds them, attacks and privacy replace them: what reaches the scheduler is here)."""
    built: list[Feedback] = []
    original = Feedback.__init__

    def spy(self: Feedback, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        built.append(self)

    monkeypatch.setattr(Feedback, "__init__", spy)
    return built
