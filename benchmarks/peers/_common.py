"""What every MNIST peer shares: the flags, the data, the shuffling scheme and the report.

numpy only, so importing it costs a peer nothing its framework does not
already load (the PyTorch peer never imports JAX, and no peer imports jaxnet
except jaxnet's own).

The data: the same four uint8 IDX files for everyone, normalised like the
course's ``ToTensor()`` + ``Normalize((0.5,), (0.5,))``: ``(x / 255 - 0.5) / 0.5``.
The shuffling scheme: a fresh uniform permutation every epoch and a short
last batch (60,000 = 937 x 64 + 32), drawn by each framework's own idiom;
the JAX step loops use jaxnet's order, ``default_rng([seed, epoch])``.

A peer prints JSON lines on stdout, which ``benchmarks/mnist_peers.py`` reads:
``{"versions": {...}}``, ``{"epoch": 1, "seconds": 4.2}`` per epoch and
``{"test_accuracy": 0.93}`` last.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def parse_args(description: str, argv=None, extra=None) -> argparse.Namespace:
    """The flags every peer takes; the defaults are the course recipe. ``extra(parser)``
    adds a peer's own flags."""
    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--epochs", type=int, default=5, help="epochs (5)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256],
                        help="hidden layer widths (512 256)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's constant rate (0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None,
                        help="folder of the MNIST IDX files ($JAXNET_DATA_DIR or "
                             "../shared/data/mnist)")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 2 epochs (overrides --epochs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 2
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive number")
    return args


def data_dir(given=None) -> Path:
    if given:
        return Path(given)
    env = os.environ.get("JAXNET_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mnist"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` or not) as a uint8 array of the shape its header gives."""
    raw = path.read_bytes()
    data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 784), labels int64 (N,))`` of ``"train"`` or ``"test"``."""
    prefix = "train" if split == "train" else "t10k"
    arrays = []
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        path = directory / f"{name}.gz"
        arrays.append(read_idx(path if path.exists() else directory / name))
    images, labels = arrays
    return images.reshape(len(images), -1), labels.astype(np.int64)


def normalize(images: np.ndarray) -> np.ndarray:
    """The course's normalisation, float32: ``(x / 255 - 0.5) / 0.5``."""
    return (images.astype(np.float32) / 255.0 - 0.5) / 0.5


def load_mnist(given_dir=None):
    """``((x_train, y_train), (x_test, y_test))``, normalised float32 pixels, int64 labels."""
    directory = data_dir(given_dir)
    out = []
    for split in ("train", "test"):
        images, labels = load_split(directory, split)
        out.append((normalize(images), labels))
    return tuple(out)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """jaxnet's shuffled order of epoch ``epoch`` (``jaxnet.data.epoch_permutation``)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(n: int, batch_size: int, seed: int, epoch: int):
    """The index batches of one epoch: shuffled, the last one short."""
    order = epoch_order(n, seed, epoch)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def torch_bound(fan_in: int) -> float:
    """PyTorch's ``nn.Linear`` init: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return 1.0 / math.sqrt(fan_in)


def emit(**record) -> None:
    print(json.dumps(record), flush=True)
