"""Heterogeneous simulated devices: tiers, the profiles clients report, the time a round takes.

Each client is drawn (seeded) into a :class:`DeviceTier`: memory for 1 to 4 experts, a
training speed, up and down bandwidth, latency, and a chance of vanishing mid-round. What the
client *reports* (:meth:`Fleet.profile`, a :class:`fedalign.ClientProfile`) is its tier's
nominal figures; what a round *actually* takes (:meth:`Fleet.round_seconds`) multiplies them
by a per-round slowdown drawn from a log-normal, so nominal plans sometimes miss the deadline
and the client drops out, as on real devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedalign import ClientProfile

__all__ = ["DEFAULT_TIERS", "UNIFORM_TIERS", "DeviceTier", "Fleet", "make_fleet"]


@dataclass(frozen=True)
class DeviceTier:
    """A class of device.

    Attributes
    ----------
    name : str
    max_experts : int
        Experts that fit in its memory at once (1-4).
    compute : float
        Training speed, samples per second for one expert.
    bandwidth_down, bandwidth_up : float
        Bytes per second.
    latency : float
        Seconds per exchange.
    dropout : float
        Chance per round that the client disappears regardless of time.
    share : float
        Relative frequency of the tier in the fleet.
    """

    name: str
    max_experts: int
    compute: float
    bandwidth_down: float
    bandwidth_up: float
    latency: float
    dropout: float
    share: float


DEFAULT_TIERS: tuple[DeviceTier, ...] = (
    DeviceTier("phone", 1, 400.0, 2.5e6, 0.6e6, 0.15, 0.05, 0.4),
    DeviceTier("laptop", 2, 1500.0, 12.5e6, 2.5e6, 0.05, 0.02, 0.35),
    DeviceTier("workstation", 4, 6000.0, 125e6, 25e6, 0.02, 0.01, 0.25),
)
"""Phones (1 expert), laptops (2), workstations (4); speeds and bandwidths an order apart."""

UNIFORM_TIERS: tuple[DeviceTier, ...] = (
    DeviceTier("laptop", 1, 1500.0, 12.5e6, 2.5e6, 0.05, 0.0, 1.0),
)
"""Every client the same device with room for one expert and no random dropouts."""


@dataclass(frozen=True)
class Fleet:
    """The devices of all clients, one tier each, and how rounds run on them.

    Attributes
    ----------
    tiers : tuple of DeviceTier
    tier_of : (n_clients,) int array
        Index into ``tiers`` per client.
    expert_bytes : int
        Bytes of one expert's parameters.
    shared_bytes : int
        Bytes of the shared parameters (trunk, gate) every client exchanges.
    slowdown_sigma : float
        Log-normal sigma of the per-round slowdown of actual against nominal speed.
    """

    tiers: tuple[DeviceTier, ...]
    tier_of: NDArray[np.int64]
    expert_bytes: int
    shared_bytes: int
    slowdown_sigma: float = 0.3

    @property
    def n_clients(self) -> int:
        """Number of clients."""
        return len(self.tier_of)

    def _col(self, name: str) -> NDArray[np.float64]:
        return np.array([getattr(t, name) for t in self.tiers], dtype=np.float64)[self.tier_of]

    @property
    def max_experts(self) -> NDArray[np.int64]:
        """Experts each client can hold, ``(n_clients,)``."""
        return self._col("max_experts").astype(np.int64)

    def profile(self, client: int, samples: int | None = None) -> ClientProfile:
        """The :class:`fedalign.ClientProfile` client ``client`` reports (nominal figures).

        Memory is in bytes: the shared part plus ``max_experts`` experts, with half an expert
        of slack, so exactly ``max_experts`` experts fit.
        """
        tier = self.tiers[int(self.tier_of[client])]
        return ClientProfile(
            memory=float(self.shared_bytes + (tier.max_experts + 0.5) * self.expert_bytes),
            compute=tier.compute,
            bandwidth_up=tier.bandwidth_up,
            bandwidth_down=tier.bandwidth_down,
            latency=tier.latency,
            max_experts=tier.max_experts,
            availability=1.0 - tier.dropout,
            samples=None if samples is None else float(samples),
        )

    def nominal_seconds(
        self,
        clients: NDArray[np.int64],
        n_experts: NDArray[np.int64],
        samples: NDArray[np.int64],
    ) -> NDArray[np.float64]:
        """Seconds a round would take at nominal speed: fetch, train, return.

        Per expert (the scheduler's profiler uses the same form): latency, its bytes down,
        ``samples / compute`` of training, its bytes up; plus the shared part's transfer.

        Parameters
        ----------
        clients : (m,) int array
        n_experts : (m,) int array
            Experts each trains.
        samples : (m,) int array
            Samples each processes per expert (local data times epochs).
        """
        tier = self.tier_of[clients]
        col = {
            name: np.array([getattr(t, name) for t in self.tiers], dtype=np.float64)[tier]
            for name in ("compute", "bandwidth_down", "bandwidth_up", "latency")
        }
        down, up = 1.0 / col["bandwidth_down"], 1.0 / col["bandwidth_up"]
        per_expert = col["latency"] + self.expert_bytes * (down + up) + samples / col["compute"]
        return n_experts * per_expert + self.shared_bytes * (down + up)

    def round_seconds(
        self,
        clients: NDArray[np.int64],
        n_experts: NDArray[np.int64],
        samples: NDArray[np.int64],
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Actual seconds this round and who vanished: ``(seconds, vanished)``.

        Seconds are the nominal ones times a log-normal slowdown (median 1); ``vanished``
        marks clients lost to their tier's dropout chance (their seconds are ``inf``). The
        draws do not depend on ``n_experts``, so strategies compared under one seed see the
        same device luck.
        """
        nominal = self.nominal_seconds(clients, n_experts, samples)
        slowdown = rng.lognormal(0.0, self.slowdown_sigma, size=len(clients))
        vanished = rng.random(len(clients)) < self._col("dropout")[clients]
        seconds = np.where(vanished, np.inf, nominal * slowdown)
        return seconds, vanished


def make_fleet(
    n_clients: int,
    *,
    expert_bytes: int,
    shared_bytes: int,
    seed: int = 0,
    tiers: tuple[DeviceTier, ...] = DEFAULT_TIERS,
    slowdown_sigma: float = 0.3,
) -> Fleet:
    """Draw each client's tier by the tiers' shares (seeded).

    Parameters
    ----------
    n_clients : int
    expert_bytes, shared_bytes : int
        Sizes of one expert and of the shared part, from the model.
    seed : int, default 0
    tiers : tuple of DeviceTier, default DEFAULT_TIERS
    slowdown_sigma : float, default 0.3
    """
    if n_clients < 1:
        raise ValueError(f"n_clients: must be >= 1, got {n_clients}")
    if not tiers:
        raise ValueError("tiers: need at least one tier")
    share = np.array([t.share for t in tiers], dtype=np.float64)
    if np.any(share < 0) or share.sum() <= 0:
        raise ValueError(f"tiers: shares must be >= 0 and not all zero, got {share.tolist()}")
    rng = np.random.default_rng(seed)
    # exact proportions (rounded), shuffled, rather than i.i.d. draws: small fleets keep the mix
    counts = np.floor(share / share.sum() * n_clients).astype(np.int64)
    counts[np.argsort(-(share / share.sum() * n_clients - counts))[: n_clients - counts.sum()]] += 1
    tier_of = rng.permutation(np.repeat(np.arange(len(tiers)), counts))
    return Fleet(tuple(tiers), tier_of, int(expert_bytes), int(shared_bytes), float(slowdown_sigma))
