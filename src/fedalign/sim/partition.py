"""Split a dataset across clients: ``domain`` (the default), ``label-skew``, ``dirichlet``.

* ``domain``: clients fall into ``n_domains`` groups; each group sees its own fixed input
  transform (a permutation of the features) and label rotation ``y -> (y + shift_d) mod C``.
  The domain is recognisable from the input and domains conflict, so one expert per domain is
  needed: the paper's "data on each client uniquely suited to a specific expert". The test set
  is the held-out split seen through every domain's transform.
* ``label-skew``: each client holds samples of only ``classes_per_client`` classes (shards).
* ``dirichlet``: per class, client shares drawn from Dirichlet(alpha) (smaller = more skewed).

Every training sample goes to exactly one client; every client gets at least one sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .data import Dataset

__all__ = ["PARTITIONS", "DomainTransform", "Partition", "make_partition"]

PARTITIONS = ("domain", "label-skew", "dirichlet")
"""Names :func:`make_partition` accepts."""


@dataclass(frozen=True)
class DomainTransform:
    """A domain's fixed view of the data: feature permutation, label shift, optional offset.

    ``offset`` (``cross-device`` only) is added to the permuted features: a fixed marker of
    the domain (as a device family's calibration would leave) that a gate can read.
    """

    permutation: NDArray[np.int64]
    label_shift: int
    offset: NDArray[np.float32] | None = None

    def apply(
        self, x: NDArray[np.float32], y: NDArray[np.int64], n_classes: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The samples ``(x, y)`` as this domain sees them."""
        seen = x[:, self.permutation]
        if self.offset is not None:
            seen = (seen + self.offset).astype(x.dtype)
        return seen, (y + self.label_shift) % n_classes


@dataclass(frozen=True)
class Partition:
    """Client datasets and the matching test set.

    Attributes
    ----------
    clients : list of (x, y)
        One float32 / int64 pair per client.
    indices : list of int arrays
        Which training samples of the source dataset each client holds.
    client_group : (n_clients,) int array
        Domain of each client (``domain``); -1 for the other partitions.
    x_test, y_test : arrays
        The held-out set, under every domain's transform for ``domain``.
    test_group : (n_test,) int array
        Domain of each test sample (-1 outside ``domain``).
    transforms : list of DomainTransform
        One per domain (empty outside ``domain``).
    kind : str
    """

    clients: list[tuple[NDArray[np.float32], NDArray[np.int64]]]
    indices: list[NDArray[np.int64]]
    client_group: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]
    test_group: NDArray[np.int64]
    kind: str
    transforms: list[DomainTransform] = field(default_factory=list)

    @property
    def n_clients(self) -> int:
        """Number of clients."""
        return len(self.clients)

    @property
    def sizes(self) -> NDArray[np.int64]:
        """Samples per client."""
        return np.array([len(y) for _, y in self.clients], dtype=np.int64)


def _iid_split(n_samples: int, n_clients: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    return [np.sort(part) for part in np.array_split(rng.permutation(n_samples), n_clients)]


def _domain(data: Dataset, n_clients: int, n_domains: int, rng: np.random.Generator) -> Partition:
    if not 1 <= n_domains <= n_clients:
        raise ValueError(f"n_domains: must be in 1..n_clients={n_clients}, got {n_domains}")
    group = np.arange(n_clients, dtype=np.int64) % n_domains
    # domain 0 sees the data as it is; the others a random permutation and a label shift
    shifts = (np.arange(n_domains) * max(1, data.n_classes // n_domains)) % data.n_classes
    transforms = [
        DomainTransform(
            np.arange(data.n_features) if d == 0 else rng.permutation(data.n_features),
            int(shifts[d]),
        )
        for d in range(n_domains)
    ]
    indices = _iid_split(len(data.y_train), n_clients, rng)
    clients = [
        transforms[group[i]].apply(data.x_train[idx], data.y_train[idx], data.n_classes)
        for i, idx in enumerate(indices)
    ]
    tests = [t.apply(data.x_test, data.y_test, data.n_classes) for t in transforms]
    return Partition(
        clients,
        indices,
        group,
        np.concatenate([x for x, _ in tests]),
        np.concatenate([y for _, y in tests]),
        np.repeat(np.arange(n_domains, dtype=np.int64), len(data.y_test)),
        "domain",
        transforms,
    )


def _label_skew(
    data: Dataset, n_clients: int, classes_per_client: int, rng: np.random.Generator
) -> Partition:
    if classes_per_client < 1:
        raise ValueError(f"classes_per_client: must be >= 1, got {classes_per_client}")
    n = len(data.y_train)
    n_shards = n_clients * classes_per_client
    if n_shards > n:
        raise ValueError(
            f"classes_per_client: {n_clients} clients x {classes_per_client} shards "
            f"need at least {n_shards} samples, the dataset has {n}"
        )
    # shards of label-sorted samples (McMahan et al.): a client gets classes_per_client shards
    order = np.lexsort((rng.random(n), data.y_train))
    shards = np.array_split(order, n_shards)
    deal = rng.permutation(n_shards).reshape(n_clients, classes_per_client)
    indices = [np.sort(np.concatenate([shards[s] for s in row])) for row in deal]
    return _plain(data, indices, "label-skew")


def _dirichlet(data: Dataset, n_clients: int, alpha: float, rng: np.random.Generator) -> Partition:
    if not alpha > 0 or not np.isfinite(alpha):
        raise ValueError(f"alpha: must be a finite number > 0, got {alpha}")
    n = len(data.y_train)
    if n < n_clients:
        raise ValueError(f"n_clients: {n_clients} clients need at least as many samples, got {n}")
    owner = np.empty(n, dtype=np.int64)
    for c in range(data.n_classes):  # loop over classes, the small dimension
        members = rng.permutation(np.flatnonzero(data.y_train == c))
        shares = rng.dirichlet(np.full(n_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
        owner[members] = np.repeat(np.arange(n_clients), np.diff(np.r_[0, cuts, len(members)]))
    # every client needs data: the largest clients hand one random sample to each empty one
    counts = np.bincount(owner, minlength=n_clients)
    for i in np.flatnonzero(counts == 0):
        donor = int(np.argmax(counts))
        pick = rng.choice(np.flatnonzero(owner == donor))
        owner[pick] = i
        counts[donor] -= 1
        counts[i] += 1
    order = np.argsort(owner, kind="stable")
    indices = np.split(order, np.cumsum(counts)[:-1])
    return _plain(data, [np.sort(ix) for ix in indices], "dirichlet")


def _plain(data: Dataset, indices: list[NDArray[np.int64]], kind: str) -> Partition:
    return Partition(
        [(data.x_train[ix], data.y_train[ix]) for ix in indices],
        indices,
        np.full(len(indices), -1, dtype=np.int64),
        data.x_test,
        data.y_test,
        np.full(len(data.y_test), -1, dtype=np.int64),
        kind,
    )


def make_partition(
    data: Dataset,
    n_clients: int,
    kind: str = "domain",
    *,
    seed: int = 0,
    n_domains: int = 4,
    classes_per_client: int = 2,
    alpha: float = 0.5,
) -> Partition:
    """Split ``data``'s training set across ``n_clients`` clients.

    Parameters
    ----------
    data : Dataset
    n_clients : int
        At least 1 and at most the number of training samples.
    kind : {"domain", "label-skew", "dirichlet"}, default "domain"
    seed : int, default 0
    n_domains : int, default 4
        Domains for ``domain`` (client ``i`` is in domain ``i % n_domains``).
    classes_per_client : int, default 2
        Shards (about one class each) per client for ``label-skew``.
    alpha : float, default 0.5
        Dirichlet concentration for ``dirichlet``.

    Returns
    -------
    Partition
    """
    if not 1 <= n_clients <= len(data.y_train):
        raise ValueError(
            f"n_clients: must be in 1..{len(data.y_train)} (training samples), got {n_clients}"
        )
    rng = np.random.default_rng(seed)
    if kind == "domain":
        return _domain(data, n_clients, n_domains, rng)
    if kind == "label-skew":
        return _label_skew(data, n_clients, classes_per_client, rng)
    if kind == "dirichlet":
        return _dirichlet(data, n_clients, alpha, rng)
    raise ValueError(f"kind: unknown partition {kind!r}; choose one of {PARTITIONS}")


def cross_device_partition(
    data: Dataset,
    n_clients: int,
    *,
    n_domains: int,
    sizes: tuple[int, int],
    label_alpha: float,
    test_per_domain: int | None = None,
    domain_offset: float = 0.0,
    seed: int = 0,
) -> Partition:
    """The ``cross-device`` split: domains, label skew within them, sizes over a decade.

    Each client falls into one of ``n_domains`` domains (balanced, shuffled), each with its
    own input permutation and label rotation as in ``domain`` (domain 0 sees the data as
    is), so the domain is recognisable from the input and domains conflict. Within its
    domain a client's labels follow Dirichlet(``label_alpha``) proportions, and its size is
    drawn log-uniformly in ``sizes``. A domain's clients hold distinct training samples
    while its pool lasts (it then starts over: clients of one domain may share samples).

    Parameters
    ----------
    data : Dataset
    n_clients, n_domains : int
    sizes : (int, int)
        Smallest and largest client dataset.
    label_alpha : float
    test_per_domain : int, optional
        Held-out samples seen through each domain's transform (None: the whole test split).
    domain_offset : float
        Scale of each domain's fixed input offset (a normal vector times this, drawn once;
        0: none), which makes the domain readable from the input where a permutation alone
        is not (MNIST-1D's positions have nearly equal statistics).
    seed : int

    Returns
    -------
    Partition
        ``kind="cross-device"``; ``client_group`` is each client's domain.
    """
    if not 1 <= n_domains <= n_clients:
        raise ValueError(f"n_domains: must be in 1..n_clients={n_clients}, got {n_domains}")
    rng = np.random.default_rng(seed)
    c = data.n_classes
    transforms = _offset_transforms(data, n_domains, domain_offset, rng)
    group = rng.permutation(np.arange(n_clients, dtype=np.int64) % n_domains)
    lo, hi = sizes
    size = np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1), n_clients))).astype(np.int64)
    size = np.clip(size, lo, hi)
    counts = rng.multinomial(size, rng.dirichlet(np.full(c, label_alpha), n_clients))
    indices = _draw_by_class(data.y_train, counts, group, n_domains, rng)
    clients = [
        transforms[group[i]].apply(data.x_train[idx], data.y_train[idx], c)
        for i, idx in enumerate(indices)
    ]
    test = np.arange(len(data.y_test))
    if test_per_domain is not None and test_per_domain < test.size:
        test = np.sort(rng.choice(test.size, test_per_domain, replace=False))
    tests = [t.apply(data.x_test[test], data.y_test[test], c) for t in transforms]
    return Partition(
        clients,
        indices,
        group,
        np.concatenate([x for x, _ in tests]),
        np.concatenate([y for _, y in tests]),
        np.repeat(np.arange(n_domains, dtype=np.int64), test.size),
        "cross-device",
        transforms,
    )


def _offset_transforms(
    data: Dataset, n_domains: int, offset: float, rng: np.random.Generator
) -> list[DomainTransform]:
    """One transform per domain (domain 0 as is), each with a fixed input offset of scale ``offset``.

    The offset (not the permutation) is what makes a domain recognisable to a gate on
    MNIST-1D; the label shift makes domains conflict.
    """
    c = data.n_classes
    shifts = (np.arange(n_domains) * max(1, c // n_domains)) % c
    return [
        DomainTransform(
            np.arange(data.n_features) if d == 0 else rng.permutation(data.n_features),
            int(shifts[d]),
            (offset * rng.standard_normal(data.n_features)).astype(np.float32)
            if offset > 0
            else None,
        )
        for d in range(n_domains)
    ]


def _draw_by_class(
    labels: NDArray[np.int64],
    counts: NDArray[np.int64],
    group: NDArray[np.int64],
    n_domains: int,
    rng: np.random.Generator,
) -> list[NDArray[np.int64]]:
    """Training indices per client: ``counts[i, k]`` samples of class ``k`` for client ``i``.

    Per domain and class, the clients take consecutive slices of one shuffled pool of that
    class (cycling when it runs out), so a domain's clients share no sample while it lasts.
    """
    parts: list[list[NDArray[np.int64]]] = [[] for _ in range(len(counts))]
    for d in range(n_domains):  # domains and classes: the small dimensions
        members = np.flatnonzero(group == d)
        for k in range(counts.shape[1]):
            pool = rng.permutation(np.flatnonzero(labels == k))
            want = counts[members, k]
            if pool.size == 0 or want.sum() == 0:
                continue
            take = pool[np.arange(int(want.sum())) % pool.size]
            for i, chunk in zip(members, np.split(take, np.cumsum(want)[:-1]), strict=True):
                parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]
