"""What ``jaxnet train mnist`` writes: ``--json`` and ``--plot``, checked first, then atomic.

Both files are checked before training (a writable folder, a name that fits,
never an existing file without ``--overwrite``) and written through
``jaxnet._fs.write_atomic``: complete or absent, never replacing a file that
appeared during training unless ``--overwrite``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .. import _fs
from ._flags import FlagError

# What --json keeps of train_mnist's result (not the state), in this order.
_RESULT_KEYS = ("test_accuracy", "test_loss", "val_accuracy", "epoch_seconds",
                "compile_seconds", "train_seconds", "train_seconds_total",
                "params_fingerprint", "config", "devices", "history")


def output_path(flag: str, value: str, overwrite: bool) -> Path:
    """The file ``--json``/``--plot`` will write, checked now: a writable folder, a file
    name that fits, not a folder, never an existing file without ``--overwrite``."""
    try:
        path, _ = _fs.user_path(value, name=flag, what="file path")
    except ValueError as e:
        raise FlagError(str(e)) from None
    parent = Path(os.path.expanduser(value)).parent  # as given, for the messages
    try:
        if path.is_dir():
            raise FlagError(f"{flag}: {value} is a folder; expected a file path")
        if os.path.lexists(path):
            if not overwrite:
                raise FlagError(f"{flag}: {value} already exists; pass --overwrite to replace it")
            if not path.is_file():
                raise FlagError(f"{flag}: {value} exists and is not a regular file; refusing "
                                f"to replace it")
        if not path.parent.is_dir():
            raise FlagError(f"{flag}: cannot write {value}: {parent} is not a writable folder")
        name_max = os.pathconf(path.parent, "PC_NAME_MAX")
        if len(os.fsencode(path.name)) > name_max:
            raise FlagError(f"{flag}: cannot write {value}: the file name is "
                            f"{len(os.fsencode(path.name))} bytes, more than the {name_max} "
                            f"this file system allows")
    except OSError as e:
        raise FlagError(f"{flag}: cannot write {value}: {parent} is not a writable folder "
                        f"({e.strerror or e})") from None
    writable_folder(flag, value, path.parent, parent)
    return path


def writable_folder(flag: str, value: str, folder: Path, shown: Path) -> None:
    """Create and remove a file in ``folder`` now, or fail naming ``shown``, not the probe."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".jaxnet-out-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise FlagError(f"{flag}: cannot write {value}: {shown} is not a writable folder "
                        f"({e.strerror or e})") from None


def plot_format(value: str) -> str:
    """The image format of ``--plot`` (from its suffix), checked with matplotlib now."""
    try:
        import matplotlib
    except ImportError as e:
        raise FlagError(f"--plot: needs matplotlib, which cannot be imported ({e}); "
                        f"pip install matplotlib, or leave out --plot") from None
    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(value).suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise FlagError(f"--plot: cannot save a .{fmt} image; expected one of "
                        f"{', '.join('.' + k for k in sorted(supported))}")
    return fmt


def write(flag: str, value: str, path: Path, overwrite: bool,
          write_to: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically with ``write_to(f)``; the flag's own messages on failure."""
    def write_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write_to(f)

    try:
        _fs.write_atomic(path, write_file, overwrite=overwrite)
    except FileExistsError:
        raise FlagError(f"{flag}: {value} appeared during training; not replaced "
                        f"(pass --overwrite to replace it)") from None
    except OSError as e:
        raise OSError(f"{flag}: could not write {value}: {e.strerror or e}") from None


def results_json(result: dict, time_to_result: float) -> bytes:
    """``--json``'s bytes: the results of ``train_mnist`` and the time to result.

    Strict JSON: a NaN or infinite number (a run that diverged with
    ``--no-check-finite``) is written as ``null``, never as ``NaN``.

    >>> results_json({"test_loss": float("nan"), "history": []}, 1.5)
    b'{\\n "test_loss": null,\\n "history": [],\\n "time_to_result_seconds": 1.5\\n}\\n'
    """
    out = {k: result[k] for k in _RESULT_KEYS if k in result}
    out["time_to_result_seconds"] = time_to_result
    return (json.dumps(_json_value(out), indent=1, allow_nan=False) + "\n").encode()


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars and arrays as numbers and lists, NaN/Inf as
    ``None``."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plot(history: list[dict], f: BinaryIO, fmt: str) -> None:
    """Loss curves (train, and validation when the history has it) and validation accuracy.

    Args:
      history: ``fit``'s per-epoch dicts (``epoch``, ``train_loss``, and
        ``val_loss``/``val_accuracy`` where validated).
      f: a binary file to write the image to.
      fmt: the image format, e.g. ``"png"`` or ``"svg"``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in history]
    has_val = any("val_loss" in e for e in history)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(9 if has_val else 4.5, 3.5),
                             squeeze=False)
    ax1 = axes[0][0]
    ax1.plot(epochs, [e["train_loss"] for e in history], "o-", label="train")
    if has_val:
        val = [(e["epoch"], e["val_loss"], e.get("val_accuracy")) for e in history
               if "val_loss" in e]
        ax1.plot([v[0] for v in val], [v[1] for v in val], "o-", label="validation")
        ax2 = axes[0][1]
        ax2.plot([v[0] for v in val if v[2] is not None],
                 [v[2] for v in val if v[2] is not None], "o-", color="C2")
        ax2.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(f, format=fmt, dpi=100)
    plt.close(fig)
