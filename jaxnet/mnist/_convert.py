"""``convert``: the MNIST MLP between PyTorch state-dict files and ``train mnist`` checkpoints.

What ``jaxnet convert`` runs. It builds on ``jaxnet.interop`` (files, state
dicts) and ``jaxnet.checkpoint`` (the folder a run resumes from); the formats
know nothing of MNIST, this module knows what the MNIST MLP and its config are.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from .. import _fs, checkpoint, interop, nn
from .._checks import non_negative_int
from ..checkpoint._runs import config_diff
from ..interop._files import SAFETENSORS_SUFFIX, TORCH_SUFFIXES, _kind
from ..train import TrainState
from ._config import RECIPES, MnistConfig
from ._train import build_model, make_optimizer, steps_per_epoch


def _config_from_json(saved: dict, shown: str) -> MnistConfig:
    """The ``MnistConfig`` a checkpoint saved; refuses a config ``train mnist`` did not write."""
    names = {f.name for f in dataclasses.fields(MnistConfig)}
    unknown = sorted(set(saved) - names - {"schedule_steps"})
    if unknown:
        raise ValueError(f"source: {shown} was not written by jaxnet train mnist (its config "
                         f"has {unknown}); convert other models with interop.to_torch_state_dict")
    values = {k: v for k, v in saved.items() if k in names}
    try:
        for key, value in saved.items():
            _check_json_type(key, value)
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return MnistConfig(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"source: {shown} has a damaged saved config: {e}; convert an intact "
                         f"checkpoint (--step), or give the settings and convert the model "
                         f"from a state-dict file") from None


_JSON_TYPES = {"epochs": int, "batch_size": int, "seed": int, "val_split": int,
               "schedule_steps": int, "lr": float, "momentum": float,
               "label_smoothing": float, "dropout": float, "optimizer": str, "schedule": str,
               "loss": str, "precision": str}


def _check_json_type(key: str, value: Any) -> None:
    """A saved ``MnistConfig`` field has the JSON type ``train mnist`` writes (``true``
    is not a learning rate of 1.0, nor ``16`` a list of layer sizes)."""
    if key == "hidden":
        if not isinstance(value, list) or not value or not all(
                isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in value):
            raise ValueError(f"hidden: expected a list of positive ints, got {value!r:.60}")
        return
    want = _JSON_TYPES[key]
    ok = isinstance(value, int | float if want is float else want) \
        and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{key}: expected {'an' if want is int else 'a'} {want.__name__}, got "
                         f"{value!r:.60}")


def _fresh_state(model, config: MnistConfig) -> TrainState:
    """``model``'s weights with a fresh optimizer state, as ``train mnist`` starts a run."""
    _, params, model_state = nn.split(model)
    optimizer = make_optimizer(config, steps_per_epoch(config))
    return TrainState.create(params, optimizer, model_state=model_state, seed=config.seed)


def _file_to_checkpoint(source: str, destination: str, config, trained_epochs: int,
                        key: str | None) -> dict:
    config = config if config is not None else RECIPES["default"]
    dest, _ = _fs.user_path(destination, name="destination")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"destination: {destination} exists and is not an empty folder; "
                              f"a converted checkpoint starts a new run in a new or empty folder")
    checkpoint.check_new_run(destination, resume=False, name="destination")
    state_dict = interop.load(source, key=key)
    model = interop.from_torch_state_dict(state_dict, build_model(config))
    # PyTorch's optimizer state is not in a state dict: the optimizer starts fresh
    # (Adam's moments at zero, a schedule from its start) at epoch `trained_epochs`.
    state = _fresh_state(model, config)
    checkpoint.save(destination, state, step=trained_epochs,
                    metadata={"epoch": trained_epochs, "history": [],
                              "config": config.to_json(steps_per_epoch(config)),
                              "converted_from": os.path.basename(source)})
    return {"direction": "file->checkpoint", "arrays": len(state_dict),
            "params": nn.count_params(model), "config": config, "epoch": trained_epochs}


def _checkpoint_to_file(source: str, destination: str, config, step: int | None,
                        overwrite: bool) -> dict:
    meta = checkpoint.load_metadata(source, step)
    saved = meta.get("config") or None
    if saved is not None:
        saved_config = _config_from_json(saved, source)
        if config is not None:
            diff = config_diff(saved_config.to_json(), config.to_json(), now="given")
            if diff:
                raise ValueError(f"config: {source} was trained with other settings: {diff}; "
                                 f"leave them out: the checkpoint's saved config is used")
        config = saved_config
    elif config is None:
        raise ValueError(f"source: {source} has no saved config; give the settings it was "
                         f"trained with (--recipe, --hidden, --optimizer, --schedule...)")
    state = checkpoint.restore(source, _fresh_state(build_model(config), config), step=step)
    state_dict = interop.to_torch_state_dict(state)
    interop.save(destination, state_dict, overwrite=overwrite)
    return {"direction": "checkpoint->file", "arrays": len(state_dict),
            "params": nn.count_params(state.params), "config": config,
            "epoch": meta.get("epoch")}


def _unused(path: str, what: str, **arguments: Any) -> None:
    """Refuse an argument that would be silently ignored for this direction."""
    for name, value in arguments.items():
        if value is not None and value != 0:
            raise ValueError(f"{name}: not used when converting {path} ({what}), got "
                             f"{value!r}")


def _refuse_existing(path: Path, shown: str, overwrite: bool) -> None:
    """Fail before any work if the destination file exists and may not be replaced."""
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"destination: {shown} already exists; pass overwrite=True "
                              f"(--overwrite) to replace it")


def convert(source, destination, *, config=None, trained_epochs: int = 0,
            step: int | None = None, key: str | None = None, overwrite: bool = False) -> dict:
    """What ``jaxnet convert`` does, for the MNIST MLP of ``jaxnet train mnist``.

    * file → checkpoint folder: a ``.pt``/``.pth``/``.bin``/``.safetensors``
      state dict of the MNIST MLP (PyTorch keys ``0.weight``… of
      ``nn.Sequential(Linear(784, h1), ReLU(), …, Linear(hk, 10))``) becomes a
      ``jaxnet train mnist`` checkpoint at epoch ``trained_epochs``: the
      weights, a *fresh* optimizer state (a state dict has none: Adam's
      moments start at zero and a schedule from its beginning), and
      ``config``. ``jaxnet train mnist --checkpoint-dir DEST --resume`` with
      the same settings then trains epochs ``trained_epochs + 1 …`` from the
      converted weights; with ``--epochs trained_epochs`` it trains nothing
      and reports the test accuracy.
    * checkpoint folder → file: the newest (or ``step``) checkpoint's model,
      built from the checkpoint's saved config, as a PyTorch state dict.
    * file → file: a format change (e.g. ``.pt`` → ``.safetensors``).

    Args:
      source, destination: paths (a folder is a checkpoint folder).
      config: an ``MnistConfig`` (default ``RECIPES["default"]``); for a
        checkpoint source only needed when it has no saved config.
      trained_epochs: the epoch the new checkpoint records.
      step: which checkpoint of a checkpoint source (default the newest).
      key: the state dict's entry in a ``.pt`` training checkpoint.
      overwrite: replace an existing destination file (a checkpoint folder
        must be new or empty: nothing there is ever replaced).

    Returns:
      dict with ``direction`` (``"file->checkpoint"``, ``"checkpoint->file"``
      or ``"file->file"``), ``arrays`` (int, how many), ``params`` (int, their
      total size), ``config`` (the ``MnistConfig`` or ``None``) and ``epoch``.

    >>> import os, tempfile
    >>> from jaxnet import interop
    >>> config = MnistConfig(hidden=(8,))
    >>> d = tempfile.mkdtemp()
    >>> file = interop.save(os.path.join(d, "mlp.safetensors"), build_model(config))
    >>> result = convert(file, os.path.join(d, "run"), config=config, trained_epochs=1)
    >>> result["direction"], result["arrays"], result["params"], result["epoch"]
    ('file->checkpoint', 4, 6370, 1)
    >>> convert(os.path.join(d, "run"), os.path.join(d, "back.safetensors"))["direction"]
    'checkpoint->file'
    """
    if config is not None and not isinstance(config, MnistConfig):
        raise TypeError(f"config: expected a jaxnet.mnist.MnistConfig, got "
                        f"{type(config).__name__}")
    trained_epochs = non_negative_int("trained_epochs", trained_epochs)
    src_path, src = _fs.user_path(source, name="source")
    dst_path, dst = _fs.user_path(destination, name="destination")
    dst_is_file = dst_path.suffix.lower() in (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES)
    if src_path.is_dir():
        if not dst_is_file:
            raise ValueError(f"destination: converting the checkpoint folder {src} needs a "
                             f"{SAFETENSORS_SUFFIX} or {'/'.join(TORCH_SUFFIXES)} file, "
                             f"got {dst!r}")
        _refuse_existing(dst_path, dst, overwrite)
        _unused(src, "a checkpoint folder", key=key, trained_epochs=trained_epochs)
        return _checkpoint_to_file(src, dst, config, step, overwrite)
    if not src_path.exists():
        raise FileNotFoundError(f"source: {src} does not exist")
    _kind(src, "source")
    _unused(src, "a file", step=step)
    if dst_is_file:
        _unused(dst, "a format change only", config=config, trained_epochs=trained_epochs)
        _refuse_existing(dst_path, dst, overwrite)
        arrays = interop.load(src, key=key)
        interop.save(dst, arrays, overwrite=overwrite)
        return {"direction": "file->file", "arrays": len(arrays),
                "params": int(sum(a.size for a in arrays.values())), "config": None,
                "epoch": None}
    return _file_to_checkpoint(src, dst, config, trained_epochs, key)
