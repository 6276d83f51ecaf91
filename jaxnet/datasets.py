"""MNIST and other IDX datasets as numpy arrays, verified.

``load_mnist`` reads the four original IDX files (``.gz`` or uncompressed)
from, in order: the ``data_dir`` argument, ``$JAXNET_DATA_DIR``, or
``~/.cache/jaxnet/mnist``. Missing files are downloaded from the mirror that
tensorflow-datasets uses and every file's *decompressed* content is checked
against its known sha256. ``load_idx`` reads any dataset in the same layout
(Fashion-MNIST, KMNIST…) without checksums.

>>> import os
>>> images, labels = load_mnist("test")  # doctest: +SKIP
>>> images.shape, images.dtype, labels.shape, labels.dtype  # doctest: +SKIP
((10000, 28, 28), dtype('uint8'), (10000,), dtype('int32'))
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np

__all__ = ["MNIST_MIRROR", "default_data_dir", "load_idx", "load_mnist", "to_float"]

MNIST_MIRROR = "https://storage.googleapis.com/cvdf-datasets/mnist/"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# sha256 of the decompressed files (the bytes that are parsed).
_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_SIZES = {"train": 60000, "test": 10000}


def default_data_dir() -> Path:
    """``$JAXNET_DATA_DIR`` if set, else ``~/.cache/jaxnet/mnist``."""
    env = os.environ.get("JAXNET_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxnet" / "mnist"


def _check_split(split: str) -> str:
    if split not in _FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return split


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot be read as an IDX file ({type(e).__name__}: {e}); "
                         f"delete it and provide it again") from None


def _parse_idx(data: bytes, path: Path, ndim: int, expected_n: int | None = None) -> np.ndarray:
    """Parse IDX bytes: magic ``0x0000 08 ndim`` (uint8), big-endian dims, then the data."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(data)} bytes, expected at least "
                         f"{header}")
    magic = int.from_bytes(data[:4], "big")
    expected_magic = 0x0800 + ndim
    if magic != expected_magic:
        raise ValueError(f"{path}: bad magic number {magic}, expected {expected_magic} "
                         f"(uint8 IDX with {ndim} dimension(s)); is it the right file?")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if expected_n is not None and dims[0] != expected_n:
        raise ValueError(f"{path}: holds {dims[0]} items, expected {expected_n}")
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise ValueError(f"{path}: {len(data) - header} data bytes after the header, expected "
                         f"{size} for dimensions {dims} (truncated or padded file)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_pair(directory: Path, split: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    image_name, label_name = _FILES[split]
    arrays = []
    for name, ndim in ((image_name, 3), (label_name, 1)):
        path = _find(directory, name)
        if path is None:
            raise FileNotFoundError(f"{directory}: missing {name}(.gz)")
        data = _read(path)
        if verify and hashlib.sha256(data).hexdigest() != _SHA256[name]:
            raise ValueError(f"{path}: sha256 of its decompressed content does not match the "
                             f"official MNIST file {name}; delete it to download it again")
        arrays.append(_parse_idx(data, path, ndim, _SIZES[split] if verify else None))
    images, labels = arrays
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels "
                         f"for split {split!r}")
    return images, labels.astype(np.int32)


def load_idx(directory, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read a dataset in MNIST's four-file IDX layout (no checksum; any sizes).

    Args:
      directory: folder with ``train-images-idx3-ubyte(.gz)`` and friends.
      split: ``"train"`` or ``"test"``.

    Returns:
      ``(images uint8 (N, H, W), labels int32 (N,))`` in file order.
    """
    return _load_pair(Path(directory), _check_split(split), verify=False)


def _download(directory: Path, names: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        url = f"{MNIST_MIRROR}{name}.gz"
        target = directory / f"{name}.gz"
        tmp = target.with_name(target.name + f".part-{os.getpid()}")
        print(f"downloading {url}")
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            f.write(response.read())
        if hashlib.sha256(gzip.decompress(tmp.read_bytes())).hexdigest() != _SHA256[name]:
            tmp.unlink()
            raise ValueError(f"{url}: downloaded content does not match the known sha256")
        os.replace(tmp, target)


def load_mnist(split: str = "train", data_dir=None,
               source: str = "idx") -> tuple[np.ndarray, np.ndarray]:
    """MNIST images and labels as numpy arrays.

    Args:
      split: ``"train"`` (60,000) or ``"test"`` (10,000).
      data_dir: folder of the four IDX files; default ``$JAXNET_DATA_DIR`` or
        ``~/.cache/jaxnet/mnist`` (missing files are downloaded there).
      source: ``"idx"`` (default, numpy only) or ``"tfds"`` (tensorflow-datasets,
        extra ``jaxnet[tfds]``; prepared offline from the same IDX files when
        ``data_dir`` holds them; its order differs from the files').

    Returns:
      ``(images uint8 (N, 28, 28), labels int32 (N,))``, in the original file
      order for ``source="idx"``.
    """
    split = _check_split(split)
    if source not in ("idx", "tfds"):
        raise ValueError(f"source: expected 'idx' or 'tfds', got {source!r}")
    directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if source == "tfds":
        from ._tfds import load_mnist_tfds

        return load_mnist_tfds(split, directory)
    missing = [n for n in _FILES[split] if _find(directory, n) is None]
    if missing:
        try:
            _download(directory, missing)
        except OSError as e:
            raise FileNotFoundError(
                f"MNIST files missing: {', '.join(m + '.gz' for m in missing)} were not found "
                f"in {directory} and could not be downloaded from {MNIST_MIRROR} ({e}). "
                f"Copy the four original IDX files into that folder, or pass data_dir= "
                f"(CLI: --data-dir) or set JAXNET_DATA_DIR to a folder that has them."
            ) from None
    return _load_pair(directory, split, verify=True)


def to_float(images: np.ndarray, mean: float = 0.5, std: float = 0.5, *,
             flatten: bool = False) -> np.ndarray:
    """Scale uint8 pixels to ``[0, 1]`` then normalise: ``(x / 255 - mean) / std``.

    The course's ``ToTensor()`` + ``Normalize((0.5,), (0.5,))``; ``flatten``
    reshapes ``(N, 28, 28)`` to ``(N, 784)`` for an MLP.

    >>> to_float(np.array([[0, 255]], np.uint8)).tolist()
    [[-1.0, 1.0]]
    """
    if std <= 0:
        raise ValueError(f"std: expected a positive number, got {std!r}")
    x = (np.asarray(images, np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
    return x.reshape(x.shape[0], -1) if flatten else x
