"""PyTorch harness for federated Mixture-of-Experts training driven by :class:`fedalign.Scheduler`.

Needs the ``sim`` extra (torch, scikit-learn, mnist1d, matplotlib, tqdm). Nothing in the core
package imports this module; import the submodules you need:

* :mod:`~fedalign.sim.naming` -- shared versus ``experts.<j>.*`` parameter names (moved to
  :mod:`fedalign.rounds.naming`, re-exported);
* :mod:`~fedalign.sim.model` -- the MoE model and partial state transfer;
* :mod:`~fedalign.sim.aggregate` -- per-expert averaging on torch tensors (the core's
  :mod:`fedalign.rounds.aggregate` at the torch boundary);
* :mod:`~fedalign.sim.client` -- one client's local training and rewards;
* :mod:`~fedalign.sim.data`, :mod:`~fedalign.sim.partition`, :mod:`~fedalign.sim.devices`;
* :mod:`~fedalign.sim.server` -- the round loop, an in-process transport over
  :class:`fedalign.rounds.RoundDriver`;
* :mod:`~fedalign.sim.config` -- :class:`~fedalign.sim.config.SimConfig`, presets, strategies;
* :mod:`~fedalign.sim.experiments` -- runs over strategies and seeds, ``results.json``;
* :mod:`~fedalign.sim.report` -- the summary table and the figures.
"""

from __future__ import annotations

from ..rounds.naming import EXPERT_PREFIX, expert_keys, expert_of_key, shared_keys

__all__ = ["EXPERT_PREFIX", "expert_keys", "expert_of_key", "shared_keys"]
