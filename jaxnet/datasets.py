"""MNIST and other IDX datasets as numpy arrays, read with bounded memory.

``load_mnist`` reads the four IDX files of MNIST's layout
(``train-images-idx3-ubyte(.gz)`` and friends). With ``data_dir`` it reads
that folder as given: any dataset in this layout (Fashion-MNIST, KMNIST…)
works, with a one-line note when the files are not the official MNIST ones.
Without it, it uses jaxnet's own data folder (``$JAXNET_DATA_DIR`` or
``~/.cache/jaxnet/mnist``), whose files must be the official MNIST files.
Missing files are downloaded from the mirror that tensorflow-datasets uses,
and every downloaded file is checked against the known sha256 of its
*decompressed* content. jaxnet creates nothing in a folder you name unless it
downloads a missing file into it, and never creates that folder.

Reading is bounded: a file must be a regular file; its IDX header says how
many bytes follow, and at most that many (plus one, to detect trailing data)
are ever decompressed, so a small ``.gz`` that expands to gigabytes is
refused early. A header may declare at most ``$JAXNET_MAX_DATA_BYTES`` bytes
per file (default: a quarter of this machine's memory, at most 2 GiB; MNIST's
largest file holds 47 MB); a larger one is refused, naming the variable,
before anything is allocated. ``load_idx`` reads the same layout with any image size.

Reading the real test split (not run by the test suite: it needs MNIST):

>>> import os
>>> images, labels = load_mnist("test")  # doctest: +SKIP
>>> images.shape, images.dtype, labels.shape, labels.dtype  # doctest: +SKIP
((10000, 28, 28), dtype('uint8'), (10000,), dtype('int32'))
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._idx import _CHUNK, read_idx

__all__ = ["MNIST_MIRROR", "default_data_dir", "load_idx", "load_mnist", "to_float"]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)

logger = logging.getLogger(__name__)

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
_MAX_DOWNLOAD = 64 << 20  # the largest official .gz is 9.9 MB


def default_data_dir() -> Path:
    """jaxnet's own data folder: ``$JAXNET_DATA_DIR`` if set, else ``~/.cache/jaxnet/mnist``.

    Returns:
      A ``Path`` (``~`` expanded); the folder need not exist.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"JAXNET_DATA_DIR": "/data/mnist"}):
    ...     default_data_dir().as_posix()
    '/data/mnist'
    >>> with mock.patch.dict(os.environ):
    ...     _ = os.environ.pop("JAXNET_DATA_DIR", None)
    ...     default_data_dir() == Path.home() / ".cache" / "jaxnet" / "mnist"
    True
    """
    env = os.environ.get("JAXNET_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxnet" / "mnist"


def _check_split(split: str) -> str:
    if split not in _FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return split


def _unreadable(name: str, shown: str) -> str:
    """The message for a folder that exists but cannot be read (mode 000, another owner's).

    >>> _unreadable("data_dir", "data")
    'data_dir: data exists but cannot be read (permission denied); give read access to it \
(chmod u+rx data) or choose another folder'
    """
    return (f"{name}: {shown} exists but cannot be read (permission denied); give read access "
            f"to it (chmod u+rx {shown}) or choose another folder")


def _check_readable(path: Path, shown: str, name: str) -> None:
    """A folder that exists but cannot be listed is said to be so, never called missing (its
    files would look absent, and a download would be tried into it)."""
    if not os.access(path, os.R_OK | os.X_OK):
        raise PermissionError(_unreadable(name, shown))


def _folder(directory, name: str) -> tuple[Path, str]:
    """``(path, the path as given)`` of an existing folder the user named; creates nothing."""
    shown = os.fsdecode(os.fspath(directory))
    path = Path(os.path.expanduser(shown))
    if not path.exists():
        raise FileNotFoundError(f"{name}: {shown} does not exist; expected a folder holding the "
                                f"four IDX files of MNIST's layout")
    if not path.is_dir():
        raise NotADirectoryError(f"{name}: {shown} is not a folder")
    _check_readable(path, shown, name)
    return path, shown


def _find(directory: Path, name: str) -> Path | None:
    """``name.gz`` or ``name`` if either entry exists (whatever it is: checked when read)."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if os.path.lexists(candidate):
            return candidate
    return None


def _load_pair(directory: Path, shown: str, split: str, *, official: str,
               log: Callable[[str], Any]) -> tuple[np.ndarray, np.ndarray]:
    """Read a split's images and labels.

    ``official``: ``"require"`` (jaxnet's own folder: must be the official
    files), ``"note"`` (a folder the user named: MNIST's layout, any content,
    noted once when not official) or ``"ignore"`` (``load_idx``: any IDX).
    """
    arrays, unofficial = [], []
    for name, ndim in zip(_FILES[split], (3, 1), strict=True):
        path = _find(directory, name)
        if path is None:
            raise FileNotFoundError(f"{shown}: missing {name}(.gz)")
        shown_file = os.path.join(shown, path.name)
        array, digest = read_idx(path, shown_file, ndim)
        if official != "ignore" and digest != _SHA256[name]:
            if official == "require":
                raise ValueError(
                    f"{shown_file}: not the official MNIST file {name} (the sha256 of its "
                    f"decompressed content differs), in jaxnet's data folder; pass its folder "
                    f"as data_dir (CLI: --data-dir) to use it as it is, or move it away so "
                    f"that jaxnet downloads the official file")
            unofficial.append(path.name)
        arrays.append(array)
    images, labels = arrays
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{shown}: {images.shape[0]} images but {labels.shape[0]} labels "
                         f"for split {split!r}")
    if images.shape[0] == 0:  # an empty dataset would fail later, far from its cause
        raise ValueError(f"{shown}: holds 0 images for split {split!r}; expected at least one "
                         f"(is it the right folder?)")
    if official != "ignore":
        if images.shape[1:] != (28, 28):
            raise ValueError(f"{shown}: holds {images.shape[1]}x{images.shape[2]} images; MNIST's "
                             f"layout has 28x28 (load_idx reads any size)")
        if labels.size and int(labels.max()) > 9:
            raise ValueError(f"{shown}: holds label {int(labels.max())}; MNIST's layout has the "
                             f"10 classes 0-9")
    if unofficial:
        log(f"note: {shown} holds IDX files other than the official MNIST ones "
            f"({', '.join(unofficial)}); using them as given")
    return images, labels.astype(np.int32)


def load_idx(directory, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read a dataset in MNIST's four-file IDX layout (no checksum; any sizes).

    Args:
      directory: folder with ``train-images-idx3-ubyte(.gz)`` and friends.
      split: ``"train"`` or ``"test"``.

    Returns:
      ``(images uint8 (N, H, W), labels int32 (N,))`` in file order.

    A tiny dataset of two 2x3 images, written in the IDX layout (magic
    ``0x0803``/``0x0801``, then big-endian int32 dimensions, then the bytes):

    >>> import gzip, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> def write_idx(name, array):
    ...     header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
    ...         d.to_bytes(4, "big") for d in array.shape)
    ...     with gzip.open(os.path.join(folder, name + ".gz"), "wb") as f:
    ...         f.write(header + array.astype(np.uint8).tobytes())
    >>> write_idx("t10k-images-idx3-ubyte", np.arange(12).reshape(2, 2, 3))
    >>> write_idx("t10k-labels-idx1-ubyte", np.array([3, 7]))
    >>> images, labels = load_idx(folder, "test")
    >>> images.shape, images.dtype, labels.tolist(), labels.dtype
    ((2, 2, 3), dtype('uint8'), [3, 7], dtype('int32'))
    """
    split = _check_split(split)
    path, shown = _folder(directory, "directory")
    return _load_pair(path, shown, split, official="ignore", log=logger.warning)


def _download(directory: Path, names: list[str]) -> None:
    """Download ``names`` into ``directory``: streamed with a size cap, verified, then linked
    into place (never replacing a file that appeared meanwhile); no partial file is left."""
    for name in names:
        url = f"{MNIST_MIRROR}{name}.gz"
        target = directory / f"{name}.gz"
        print(f"downloading {url}", flush=True)
        with urllib.request.urlopen(url, timeout=60) as response:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.gz.", suffix=".jaxnet-download",
                                       dir=directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    total = 0
                    while chunk := response.read(_CHUNK):
                        total += len(chunk)
                        if total > _MAX_DOWNLOAD:
                            raise ValueError(f"{url}: larger than {_MAX_DOWNLOAD} bytes; not "
                                             f"the MNIST file")
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                os.unlink(tmp)
                raise
        try:
            _, digest = read_idx(Path(tmp), url, 3 if "images" in name else 1, compressed=True)
            if digest != _SHA256[name]:
                raise ValueError(f"{url}: downloaded content does not match the known sha256")
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, target)
            except FileExistsError:
                pass  # another process downloaded it meanwhile: keep that one
            except OSError:  # no hard links on this file system
                if not os.path.lexists(target):
                    os.replace(tmp, target)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)  # ours, from mkstemp


def load_mnist(split: str = "train", data_dir=None, source: str = "idx", *,
               log: Callable[[str], Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST (or any dataset in MNIST's layout) as numpy arrays.

    Args:
      split: ``"train"`` (60,000 for MNIST) or ``"test"`` (10,000).
      data_dir: an existing folder of the four IDX files, read as given (files
        missing there are downloaded into it); default: jaxnet's own data
        folder (``$JAXNET_DATA_DIR`` or ``~/.cache/jaxnet/mnist``, created and
        filled by download), whose files must be the official ones.
      source: ``"idx"`` (default, numpy only) or ``"tfds"`` (tensorflow-datasets,
        extra ``jaxnet-course[tfds]``; prepared offline from the same IDX files when
        ``data_dir`` holds them; its order differs from the files').
      log: where the one-line note about non-official files goes (default: a
        ``logging`` warning of ``jaxnet.datasets``).

    Returns:
      ``(images uint8 (N, 28, 28), labels int32 (N,))``, in the original file
      order for ``source="idx"``.

    The example reads a folder of two fake 28x28 images in MNIST's layout (the
    real files would need MNIST on disk or a download); ``log`` receives the
    note that they are not the official files:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name, array in [("t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8)),
    ...                     ("t10k-labels-idx1-ubyte", np.array([4, 2], np.uint8))]:
    ...     header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
    ...         d.to_bytes(4, "big") for d in array.shape)
    ...     _ = Path(folder, name).write_bytes(header + array.tobytes())
    >>> images, labels = load_mnist("test", data_dir=folder, log=print)
    note: ... holds IDX files other than the official MNIST ones (...); using them as given
    >>> images.shape, labels.tolist()
    ((2, 28, 28), [4, 2])
    """
    split = _check_split(split)
    if source not in ("idx", "tfds"):
        raise ValueError(f"source: expected 'idx' or 'tfds', got {source!r}")
    own = data_dir is None
    if own:
        directory = default_data_dir()
        shown = str(directory)
        if directory.is_dir():  # created if missing, below; never downloaded into unread
            _check_readable(directory, shown, "JAXNET_DATA_DIR" if os.environ.get(
                "JAXNET_DATA_DIR") else "jaxnet's data folder")
    else:
        directory, shown = _folder(data_dir, "data_dir")
    if source == "tfds":
        from ._tfds import load_mnist_tfds

        return load_mnist_tfds(split, directory)
    missing = [n for n in _FILES[split] if _find(directory, n) is None]
    if missing:
        try:
            if own:
                directory.mkdir(parents=True, exist_ok=True)
            _download(directory, missing)
        except OSError as e:
            raise FileNotFoundError(
                f"MNIST files missing: {', '.join(m + '.gz' for m in missing)} were not found "
                f"in {shown} and could not be downloaded from {MNIST_MIRROR} ({e}). "
                f"Copy the four original IDX files into that folder, or pass data_dir= "
                f"(CLI: --data-dir) or set JAXNET_DATA_DIR to a folder that has them."
            ) from None
    return _load_pair(directory, shown, split, official="require" if own else "note",
                      log=log or logger.warning)


def to_float(images: np.ndarray, mean: float = 0.5, std: float = 0.5, *,
             flatten: bool = False) -> np.ndarray:
    """Scale uint8 pixels to ``[0, 1]`` then normalise: ``(x / 255 - mean) / std``.

    The course's ``ToTensor()`` + ``Normalize((0.5,), (0.5,))``; ``flatten``
    reshapes ``(N, 28, 28)`` to ``(N, 784)`` for an MLP.

    Args:
      images: uint8 array ``(N, ...)``, e.g. ``(N, 28, 28)`` from ``load_mnist``.
      mean: subtracted after scaling to ``[0, 1]``.
      std: positive divisor.
      flatten: reshape the result to ``(N, prod(...))``.

    Returns:
      A float32 array of ``images``' shape, or ``(N, prod(...))`` with ``flatten``.

    >>> to_float(np.zeros((2, 28, 28), np.uint8), flatten=True).shape
    (2, 784)
    >>> to_float(np.array([[0, 255]], np.uint8)).tolist()
    [[-1.0, 1.0]]
    """
    if std <= 0:
        raise ValueError(f"std: expected a positive number, got {std!r}")
    x = scale_pixels(np.asarray(images, np.float32), np.float32(mean), np.float32(std))
    return x.reshape(x.shape[0], -1) if flatten else x


def scale_pixels(x, mean=0.5, std=0.5):
    """``(x / 255 - mean) / std`` of float32 pixels: numpy or (traced, jitted) JAX arrays.

    The one home of the pixel normalisation, shared by ``to_float`` (numpy,
    before training) and ``jaxnet.mnist.normalize`` (inside the jitted step).

    Args:
      x: float32 array of pixel values in [0, 255].
      mean, std: as for ``to_float``.

    Returns:
      A float32 array of ``x``'s shape.

    >>> scale_pixels(np.array([0, 255], np.float32)).tolist()
    [-1.0, 1.0]
    """
    return (x / 255.0 - mean) / std
