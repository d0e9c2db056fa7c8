"""Solver benchmark: instance families, OR-Library GAP instances, runner and report.

``fedalign bench`` (see :mod:`fedalign.cli`) is a thin wrapper over :func:`run_benchmark`.
"""

from __future__ import annotations

from .families import FAMILIES, make_instance

__all__ = ["FAMILIES", "make_instance"]
