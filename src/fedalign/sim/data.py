"""Datasets for the harness, all loadable offline: ``digits``, ``mnist1d``, ``cifar10``.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images); the default.
* ``mnist1d``: generated locally by the ``mnist1d`` package's own generator
  (``mnist1d.data.make_dataset``); nothing is downloaded.
* ``cifar10``: read from a local folder in CIFAR-10's python format (``data_batch_1`` ..
  ``data_batch_5`` and ``test_batch`` pickles, in the folder or in its
  ``cifar-10-batches-py`` subfolder), parsed here without torchvision. With ``download=True``
  and torchvision installed, torchvision fetches the archive into the folder first.

Every loader returns a :class:`Dataset` of float32 features (flattened per sample) and int64
labels, centred and scaled with the training split's overall mean and standard deviation.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["DATASETS", "Dataset", "load_cifar10", "load_dataset", "load_digits", "load_mnist1d"]

DATASETS = ("digits", "mnist1d", "cifar10")
"""Names :func:`load_dataset` accepts."""

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"


@dataclass(frozen=True)
class Dataset:
    """A train/test split of a classification dataset.

    Attributes
    ----------
    name : str
    x_train, x_test : (n, d) float32 arrays
        Flattened, standardised features.
    y_train, y_test : (n,) int64 arrays
        Labels in ``0 .. n_classes - 1``.
    n_classes : int
    input_shape : tuple of int
        Shape of one sample before flattening (e.g. ``(3, 32, 32)``).
    """

    name: str
    x_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]
    n_classes: int
    input_shape: tuple[int, ...]

    @property
    def n_features(self) -> int:
        """Flattened input dimension."""
        return int(self.x_train.shape[1])


def _standardise(
    x_train: NDArray[Any], x_test: NDArray[Any]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Centre and scale by *one* mean and standard deviation over all features.

    Not per feature on purpose: per-feature standardisation would erase the feature means
    that let a (linear) gate recognise a domain's input permutation.
    """
    mean = float(x_train.mean())
    std = float(x_train.std()) or 1.0
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def _split(
    x: NDArray[Any], y: NDArray[Any], test_fraction: float, seed: int
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Stratified train/test split (per class, the first ``test_fraction`` go to test)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    ys = y[order]
    # rank of each sample within its class, in the shuffled order
    by_class = np.argsort(ys, kind="stable")
    counts = np.bincount(ys)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(y), dtype=np.int64)
    rank[by_class] = np.arange(len(y)) - np.repeat(starts, counts)
    is_test = rank < np.ceil(test_fraction * counts[ys])
    te, tr = order[is_test], order[~is_test]
    return x[tr], y[tr], x[te], y[te]


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (bundled with scikit-learn, offline).

    Parameters
    ----------
    test_fraction : float, default 0.2
        Share of each class held out for testing.
    seed : int, default 0
        Seeds the split.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_tr, y_tr, x_te, y_te = _split(x, y, test_fraction, seed)
    x_tr, x_te = _standardise(x_tr, x_te)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, 10, (8, 8))


def load_mnist1d(*, num_samples: int = 5000, seed: int = 0, train_split: float = 0.8) -> Dataset:
    """MNIST-1D generated locally with ``mnist1d.data.make_dataset`` (no download).

    Parameters
    ----------
    num_samples : int, default 5000
        Samples to generate (the package's default).
    seed : int, default 0
        The generator's seed (the package's own default is 42).
    train_split : float, default 0.8

    Notes
    -----
    The package's generator seeds the global ``random`` and ``numpy.random`` state; this
    function restores both afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    args.train_split = float(train_split)
    # the generator reseeds the global RNGs; put them back as they were
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    # the generator already centres and scales the data as a whole
    x_tr = np.asarray(raw["x"], dtype=np.float32)
    x_te = np.asarray(raw["x_test"], dtype=np.float32)
    return Dataset(
        "mnist1d",
        x_tr,
        np.asarray(raw["y"], dtype=np.int64),
        x_te,
        np.asarray(raw["y_test"], dtype=np.int64),
        10,
        (x_tr.shape[1],),
    )


def _cifar_folder(root: Path) -> Path:
    for folder in (root, root / "cifar-10-batches-py"):
        if (folder / CIFAR10_TEST_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"root: no CIFAR-10 python batches in {str(root)!r} or its 'cifar-10-batches-py' "
        f"subfolder (expected {', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE}); "
        "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "and extract it there, or pass download=True with torchvision installed"
    )


def read_cifar10_batch(path: str | Path) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """One CIFAR-10 python batch: ``(n, 3, 32, 32)`` uint8 images and ``(n,)`` labels.

    The file is a pickled dict with ``b"data"`` (``n x 3072`` uint8, channel-major rows) and
    ``b"labels"`` (n ints), as distributed in ``cifar-10-python.tar.gz``. Only load files
    you trust: unpickling runs code.
    """
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="bytes")
    data = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"path: {str(path)!r} is not a CIFAR-10 batch (no data/labels)")
    images = np.asarray(data, dtype=np.uint8)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"path: {str(path)!r} holds data of shape {images.shape}, expected (n, 3072)"
        )
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (images.shape[0],):
        raise ValueError(f"path: {str(path)!r} has {y.size} labels for {images.shape[0]} images")
    return images.reshape(-1, 3, 32, 32), y


def load_cifar10(root: str | Path, *, download: bool = False) -> Dataset:
    """CIFAR-10 from a local folder in its python-pickle format.

    Parameters
    ----------
    root : str or Path
        Folder holding the batches, or their ``cifar-10-batches-py`` subfolder.
    download : bool, default False
        If the batches are missing, let torchvision download them into ``root`` (needs
        torchvision and a network).

    Returns
    -------
    Dataset
        Features standardised per channel with the training statistics, flattened to 3,072.
    """
    root = Path(root)
    try:
        folder = _cifar_folder(root)
    except FileNotFoundError:
        if not download:
            raise
        try:
            from torchvision.datasets import CIFAR10
        except ImportError as exc:
            raise FileNotFoundError(
                f"root: no CIFAR-10 batches in {str(root)!r}, and download=True needs torchvision"
            ) from exc
        CIFAR10(str(root), train=True, download=True)
        folder = _cifar_folder(root)
    train = [read_cifar10_batch(folder / f) for f in CIFAR10_TRAIN_FILES if (folder / f).is_file()]
    if not train:
        raise FileNotFoundError(f"root: no data_batch_* files in {str(folder)!r}")
    x_tr = np.concatenate([b[0] for b in train]).astype(np.float32) / 255.0
    y_tr = np.concatenate([b[1] for b in train])
    x_te_u8, y_te = read_cifar10_batch(folder / CIFAR10_TEST_FILE)
    x_te = x_te_u8.astype(np.float32) / 255.0
    mean = x_tr.mean(axis=(0, 2, 3), keepdims=True)
    std = x_tr.std(axis=(0, 2, 3), keepdims=True)
    std[std < 1e-8] = 1.0
    x_tr = ((x_tr - mean) / std).reshape(len(y_tr), -1).astype(np.float32)
    x_te = ((x_te - mean) / std).reshape(len(y_te), -1).astype(np.float32)
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, 10, (3, 32, 32))


def load_dataset(
    name: str, *, seed: int = 0, root: str | Path | None = None, **options: Any
) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : {"digits", "mnist1d", "cifar10"}
    seed : int, default 0
        Seeds the split (digits) or the generator (mnist1d); CIFAR-10 has a fixed split.
    root : str or Path, optional
        CIFAR-10's folder (required for ``cifar10``).
    **options
        Passed to the loader (e.g. ``num_samples`` for mnist1d, ``download`` for cifar10).
    """
    if name == "digits":
        return load_digits(seed=seed, **options)
    if name == "mnist1d":
        return load_mnist1d(seed=seed, **options)
    if name == "cifar10":
        if root is None:
            raise ValueError("root: cifar10 needs the folder holding its python batches")
        return load_cifar10(root, **options)
    raise ValueError(f"name: unknown dataset {name!r}; choose one of {DATASETS}")
