"""Moved to :mod:`fedalign.rounds.naming`; re-exported here so old imports keep working."""

from __future__ import annotations

from ..rounds.naming import EXPERT_PREFIX, expert_keys, expert_of_key, shared_keys

__all__ = ["EXPERT_PREFIX", "expert_keys", "expert_of_key", "shared_keys"]
