"""The cross-device fleet: registered devices, who is online each round, and their channels.

:func:`make_population` draws the ``cross-device`` scenario's registered devices (seeded): a
tier each (phones, laptops, workstations by ``tier_shares``), then memory, compute, up and
down bandwidth and latency log-normally around the tier's medians. That is what a device
*registers* (:meth:`Population.profile`). What it *does* differs in three ways the scheduler
never sees directly:

* a hidden per-client slowdown of its training (log-normal, median 1), constant over the run;
* a per-round jitter on its whole round time (log-normal, median 1);
* a per-round fading factor on its bandwidths (log-normal, mean 1), which the device measures
  and reports at check-in: the one condition the server learns before it plans.

:func:`make_timeline` draws, for every round at once, who is online (a two-state Markov
chain per client, so availability is correlated over rounds), the fading and jitter factors,
who vanishes mid-round and the check-in order. The timeline depends on the seed only, so
every strategy of a seed sees the same world.

Device figures are those of the deployed model; ``size_scale`` maps them onto the simulated
one (:class:`fedalign.sim.config.SimConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedalign import ClientProfile

from .config import SimConfig

__all__ = ["Population", "Timeline", "make_population", "make_timeline"]

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Population:
    """The registered devices, in the simulated model's units.

    Bandwidths are tensor bytes per second and memory is tensor bytes: the device's figures
    divided by ``size_scale``, so that moving or holding the simulated tensors costs what the
    deployed model's would.

    Attributes
    ----------
    tier_names : tuple of str
    tier_of : (n,) int
        Tier index per client.
    memory : (n,) float
        Memory the client reports for experts (its training memory less the shared part's).
    compute : (n,) float
        Reported samples per second on an expert of cost 1.
    bandwidth_down, bandwidth_up : (n,) float
        Registered bandwidth, before this round's fading.
    latency : (n,) float
        Seconds per expert exchanged.
    slowdown : (n,) float
        Hidden factor on the training time (>= 0; not in the profile).
    vanish : (n,) float
        Chance of vanishing mid-round once given experts.
    online : (n,) float
        Long-run probability of being online in a round.
    """

    tier_names: tuple[str, ...]
    tier_of: NDArray[np.int64]
    memory: Floats
    compute: Floats
    bandwidth_down: Floats
    bandwidth_up: Floats
    latency: Floats
    slowdown: Floats
    vanish: Floats
    online: Floats

    @property
    def n_clients(self) -> int:
        """Registered clients."""
        return int(self.tier_of.size)

    def profile(self, client: int, *, samples: float, max_experts: int) -> ClientProfile:
        """What ``client`` registers: its drawn figures, nothing of its hidden slowdown."""
        return ClientProfile(
            memory=float(self.memory[client]),
            compute=float(self.compute[client]),
            bandwidth_up=float(self.bandwidth_up[client]),
            bandwidth_down=float(self.bandwidth_down[client]),
            latency=float(self.latency[client]),
            max_experts=int(max_experts),
            availability=1.0 - float(self.vanish[client]),
            samples=float(samples),
        )


def _tier_counts(shares: tuple[float, ...], n: int) -> NDArray[np.int64]:
    """Exact proportions, rounded by largest remainder (small fleets keep the mix)."""
    share = np.asarray(shares, dtype=np.float64) / float(np.sum(shares))
    counts = np.floor(share * n).astype(np.int64)
    counts[np.argsort(-(share * n - counts))[: n - int(counts.sum())]] += 1
    return counts


def make_population(config: SimConfig, *, shared_memory: float, seed: int) -> Population:
    """Draw the registered fleet of ``config`` (``n_clients`` devices).

    Parameters
    ----------
    config : SimConfig
    shared_memory : float
        Training memory of the shared part, in tensor bytes: taken off what each device
        reports for experts (never below 0).
    seed : int
    """
    rng = np.random.default_rng([seed, 104729])
    n, scale = config.n_clients, config.size_scale
    tier = rng.permutation(np.repeat(np.arange(config.n_tiers), _tier_counts(config.tier_shares, n)))

    def draw(medians: tuple[float, ...]) -> Floats:
        return np.asarray(medians, dtype=np.float64)[tier] * rng.lognormal(0.0, config.tier_spread, n)

    memory = draw(config.tier_memory) / scale
    compute = draw(config.tier_compute)
    down = draw(config.tier_bandwidth_down) / scale
    up = draw(config.tier_bandwidth_up) / scale
    latency = draw(config.tier_latency)
    slowdown = rng.lognormal(0.0, config.hidden_slowdown_sigma, n)
    return Population(
        tuple(config.tier_names),
        tier.astype(np.int64),
        np.maximum(memory - shared_memory, 0.0),
        compute,
        down,
        up,
        latency,
        slowdown,
        np.asarray(config.tier_vanish, dtype=np.float64)[tier],
        np.asarray(config.tier_online, dtype=np.float64)[tier],
    )


@dataclass(frozen=True)
class Timeline:
    """Per round and client, what the world does; ``(rounds, n)`` arrays.

    Attributes
    ----------
    online : bool
        Online at check-in.
    fading : float
        Factor on both bandwidths this round (reported at check-in).
    jitter : float
        Factor on the whole round time.
    vanished : bool
        Disappears mid-round if given experts.
    arrival : float
        Check-in time in [0, 1): the order in which an arrival-order server admits clients.
    """

    online: NDArray[np.bool_]
    fading: Floats
    jitter: Floats
    vanished: NDArray[np.bool_]
    arrival: Floats

    def online_clients(self, rnd: int) -> NDArray[np.int64]:
        """Ids of the clients online in round ``rnd``, ascending."""
        return np.flatnonzero(self.online[rnd]).astype(np.int64)


def make_timeline(config: SimConfig, population: Population, *, seed: int) -> Timeline:
    """Draw every round's availability, channel, jitter, vanishing and check-in order.

    Availability is a two-state Markov chain per client: an online client stays online with
    probability ``1 - 1/online_spell``; an offline one comes online with the probability
    that keeps the long-run share at its tier's ``tier_online``. Round 0 starts from that
    long-run share.
    """
    rng = np.random.default_rng([seed, 7919, 2])
    rounds, n = config.rounds, population.n_clients
    pi = population.online
    leave = np.full(n, 1.0 / config.online_spell)
    # stationary: pi * leave = (1 - pi) * join
    join = np.minimum(pi * leave / (1.0 - pi), 1.0)
    online = np.empty((rounds, n), dtype=bool)
    online[0] = rng.random(n) < pi
    for r in range(1, rounds):  # rounds are sequential; clients are vectorised
        u = rng.random(n)
        online[r] = np.where(online[r - 1], u >= leave, u < join)
    sigma = config.fading_sigma
    fading = rng.lognormal(-0.5 * sigma**2, sigma, (rounds, n))  # mean 1
    jitter = rng.lognormal(0.0, config.jitter_sigma, (rounds, n))
    vanished = rng.random((rounds, n)) < population.vanish[None, :]
    arrival = rng.random((rounds, n))
    return Timeline(online, fading, jitter, vanished, arrival)
