"""``jaxnet convert SOURCE --to DESTINATION``: runs ``jaxnet.mnist.convert``, says what's next."""

from __future__ import annotations

import os
from pathlib import Path

from ._flags import CONVERT_FIELDS, FlagError, as_flag_error, flag
from ._outputs import writable_folder

# Suffixes of other formats, which a destination would otherwise be taken as a folder name for.
_OTHER_FORMATS = (".npz", ".npy", ".h5", ".hdf5", ".keras", ".json", ".pkl", ".pickle",
                  ".onnx", ".msgpack", ".zip", ".tar", ".gz", ".tgz", ".pb", ".tflite", ".ckpt",
                  ".txt", ".csv", ".joblib", ".gguf")


def run(args) -> int:
    """Convert as the flags say; print what was converted and how to continue it."""
    from .. import mnist
    from ..mnist._config import layer_sizes

    given = [f for f in ("recipe", *CONVERT_FIELDS) if getattr(args, f) is not None]
    config = None
    if given:
        try:
            config = mnist.RECIPES[args.recipe or "default"].with_updates(
                **{f: getattr(args, f) for f in given if f != "recipe"})
        except (ValueError, TypeError) as e:
            raise as_flag_error(e) from None
    _check_destination(args.destination)
    result = mnist.convert(args.source, args.destination, config=config,
                           trained_epochs=args.trained_epochs, step=args.step, key=args.key,
                           overwrite=args.overwrite)
    what = f"{result['arrays']} arrays, {result['params']:,} values"
    if result["config"] is not None:
        what = f"MLP {'-'.join(map(str, layer_sizes(result['config'])))}, {what}"
    print(f"converted {args.source} -> {args.destination} ({what})")
    if result["direction"] == "file->checkpoint":
        c = result["config"]
        flags = [f"--recipe {args.recipe or 'default'}", f"--epochs {c.epochs}"]
        flags += [f"{flag(f)} "
                  + (",".join(map(str, v)) if isinstance(v := getattr(args, f), tuple) else str(v))
                  for f in given if f not in ("recipe", "epochs")]
        evaluate = (f" (or, with --epochs {result['epoch']}, only evaluate)"
                    if result["epoch"] else "")
        print(f"epoch {result['epoch']}, fresh optimizer state; continue{evaluate} with: jaxnet "
              f"train mnist --checkpoint-dir {args.destination} --resume {' '.join(flags)}")
    return 0


def _check_destination(value: str) -> None:
    """``--to``: a supported file suffix or a folder name (not another format's file), in a
    folder jaxnet can write; checked before anything is read or written."""
    from ..interop._files import SAFETENSORS_SUFFIX, TORCH_SUFFIXES

    path = Path(os.path.expanduser(value))
    supported = (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES)
    suffix = path.suffix.lower()
    if suffix in _OTHER_FORMATS and not path.is_dir():
        raise FlagError(f"--to: expected a checkpoint folder or a "
                        f"{', '.join(supported[:-1])} or {supported[-1]} file, got {value} "
                        f"(a {suffix} file); choose one of those suffixes, or a folder name "
                        f"without one")
    folder = path if path.is_dir() else path.parent  # an existing folder: files go inside
    if folder.is_dir():  # a missing parent is convert's to report
        writable_folder("--to", value, folder, folder)
