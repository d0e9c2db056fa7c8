"""Shared pytest setup: makes ``tests/`` importable and registers Hypothesis profiles.

``from strategies import ...`` works from every test module (tests have no ``__init__.py``).

Hypothesis profiles (choose with ``HYPOTHESIS_PROFILE=<name>``):

* ``ci`` (default): derandomized, no example database, no deadline: the same examples on
  every run and every machine, so the suite's run time and verdict are reproducible.
* ``dev``: random examples, database on, for exploring locally.
* ``thorough``: ten times the examples of each test, for a long bug hunt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

_TESTS = Path(__file__).resolve().parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile("dev", deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    phases=list(Phase),
    suppress_health_check=_SLOW_OK,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
