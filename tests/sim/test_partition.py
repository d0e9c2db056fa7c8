"""Partition properties (Hypothesis): disjoint cover, non-empty clients, each kind's promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedalign.sim.data import Dataset
from fedalign.sim.partition import make_partition


def _data(n: int, d: int = 6, classes: int = 5, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (np.arange(n) % classes).astype(np.int64)
    rng.shuffle(y)
    xt = rng.normal(size=(7, d)).astype(np.float32)
    yt = (np.arange(7) % classes).astype(np.int64)
    return Dataset("toy", x, y, xt, yt, classes, (d,))


def _check_cover(data, part, n_clients):
    assert part.n_clients == n_clients
    allidx = np.concatenate(part.indices)
    assert np.array_equal(np.sort(allidx), np.arange(len(data.y_train)))  # disjoint cover
    assert np.all(part.sizes >= 1)
    for (x, y), idx in zip(part.clients, part.indices, strict=True):
        assert len(x) == len(y) == len(idx)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(20, 120),
    n_clients=st.integers(1, 12),
    n_domains=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_domain_partition(n, n_clients, n_domains, seed):
    n_domains = min(n_domains, n_clients)
    data = _data(n, seed=seed)
    part = make_partition(data, n_clients, "domain", seed=seed, n_domains=n_domains)
    _check_cover(data, part, n_clients)
    assert np.array_equal(part.client_group, np.arange(n_clients) % n_domains)
    for i, ((x, y), idx) in enumerate(zip(part.clients, part.indices, strict=True)):
        t = part.transforms[part.client_group[i]]
        # each client sees its domain's fixed transform of its own samples
        np.testing.assert_array_equal(x, data.x_train[idx][:, t.permutation])
        np.testing.assert_array_equal(y, (data.y_train[idx] + t.label_shift) % data.n_classes)
    # permutations are permutations; the test set holds every domain's view
    for t in part.transforms:
        assert np.array_equal(np.sort(t.permutation), np.arange(data.n_features))
    assert len(part.y_test) == n_domains * len(data.y_test)
    assert np.array_equal(np.bincount(part.test_group), np.full(n_domains, len(data.y_test)))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(40, 150),
    n_clients=st.integers(1, 10),
    k=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_label_skew_partition(n, n_clients, k, seed):
    data = _data(n, seed=seed)
    part = make_partition(data, n_clients, "label-skew", seed=seed, classes_per_client=k)
    _check_cover(data, part, n_clients)
    # a shard of label-sorted data spans few classes: at most ceil(shard / smallest class) + 1
    shard = -(-n // (n_clients * k))
    per_shard = -(-shard // int(np.bincount(data.y_train).min())) + 1
    assert all(len(np.unique(y)) <= k * per_shard for _, y in part.clients)
    if shard <= int(np.bincount(data.y_train).min()):
        assert all(len(np.unique(y)) <= 2 * k for _, y in part.clients)
    assert np.all(part.client_group == -1)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(20, 150),
    n_clients=st.integers(1, 15),
    alpha=st.floats(0.05, 50.0),
    seed=st.integers(0, 2**16),
)
def test_dirichlet_partition(n, n_clients, alpha, seed):
    data = _data(n, seed=seed)
    part = make_partition(data, n_clients, "dirichlet", seed=seed, alpha=alpha)
    _check_cover(data, part, n_clients)
    again = make_partition(data, n_clients, "dirichlet", seed=seed, alpha=alpha)
    assert all(np.array_equal(a, b) for a, b in zip(part.indices, again.indices, strict=True))


def test_small_alpha_skews_more_than_large():
    data = _data(2000, classes=10)

    def mean_classes(alpha):
        part = make_partition(data, 10, "dirichlet", seed=0, alpha=alpha)
        return np.mean([len(np.unique(y)) for _, y in part.clients])

    assert mean_classes(0.05) < mean_classes(100.0)


def test_errors():
    data = _data(30)
    with pytest.raises(ValueError, match="n_clients"):
        make_partition(data, 31)
    with pytest.raises(ValueError, match="n_domains"):
        make_partition(data, 3, "domain", n_domains=4)
    with pytest.raises(ValueError, match="alpha"):
        make_partition(data, 3, "dirichlet", alpha=0.0)
    with pytest.raises(ValueError, match="classes_per_client"):
        make_partition(data, 20, "label-skew", classes_per_client=2)
    with pytest.raises(ValueError, match="unknown partition"):
        make_partition(data, 3, "iid")
