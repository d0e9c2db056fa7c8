"""Dataset loaders: digits and mnist1d offline, CIFAR-10 from a fake file in its format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fedalign.sim.data import load_cifar10, load_dataset, read_cifar10_batch

pytest.importorskip("sklearn")


def _write_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    with open(path, "wb") as fh:  # the layout of cifar-10-python.tar.gz: bytes keys
        pickle.dump(
            {b"batch_label": b"fake", b"labels": labels, b"data": data, b"filenames": []}, fh
        )
    return data, labels


def test_cifar10_loader_on_fake_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train = [_write_batch(folder / f"data_batch_{i}", 6, i) for i in range(1, 6)]
    test_data, test_labels = _write_batch(folder / "test_batch", 4, 99)
    images, labels = read_cifar10_batch(folder / "data_batch_2")
    assert images.shape == (6, 3, 32, 32) and images.dtype == np.uint8
    # channel-major rows: the first 1024 values are the red plane
    np.testing.assert_array_equal(images[0, 0].ravel(), train[1][0][0, :1024])
    np.testing.assert_array_equal(labels, train[1][1])

    ds = load_cifar10(tmp_path)  # finds the subfolder
    assert ds.name == "cifar10" and ds.input_shape == (3, 32, 32)
    assert ds.x_train.shape == (30, 3072) and ds.x_test.shape == (4, 3072)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, np.concatenate([t[1] for t in train]))
    np.testing.assert_array_equal(ds.y_test, test_labels)
    # standardised per channel with the training statistics
    per_channel = ds.x_train.reshape(30, 3, -1)
    np.testing.assert_allclose(per_channel.mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(per_channel.std(axis=(0, 2)), 1.0, atol=1e-3)
    # same pixel order as the file: test pixel (0, 0) of the red plane, mapped affinely
    raw = test_data[:, 0].astype(np.float64)
    z = ds.x_test[:, 0].astype(np.float64)
    assert np.corrcoef(raw, z)[0, 1] == pytest.approx(1.0)
    assert load_dataset("cifar10", root=folder).x_train.shape == (30, 3072)


def test_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        load_cifar10(tmp_path)
    bad = tmp_path / "test_batch"
    with open(bad, "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match="3072"):
        read_cifar10_batch(bad)
    with pytest.raises(ValueError, match="root"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


def test_digits_split_is_stratified_and_seeded():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert a.x_train.shape[1] == 64 and a.n_classes == 10
    assert len(a.y_train) + len(a.y_test) == 1797
    share = np.bincount(a.y_test) / np.bincount(np.concatenate([a.y_train, a.y_test]))
    assert np.all(np.abs(share - 0.2) < 0.02)
    assert not np.array_equal(a.y_train, b.y_train)
    assert abs(float(a.x_train.mean())) < 1e-5


def test_mnist1d_generated_locally_and_leaves_global_rng_alone():
    pytest.importorskip("mnist1d")
    np.random.seed(123)  # noqa: NPY002 - checking that the loader restores the global state
    expected = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    ds = load_dataset("mnist1d", seed=3, num_samples=400)
    assert np.random.random() == expected  # noqa: NPY002
    assert ds.x_train.shape == (320, 40) and ds.x_test.shape == (80, 40)
    assert set(np.unique(ds.y_train)) <= set(range(10))
    again = load_dataset("mnist1d", seed=3, num_samples=400)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
