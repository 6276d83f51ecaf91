"""``fit``'s run protocol beside the store: new-run check, lock, resume, config check.

``check_new_run`` before the first epoch; ``epoch_metadata`` with each save;
``resume`` (``fit``'s) = ``resume_state`` + ``check_same_config``, which
refuses another configuration before it says, moves or restores anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import _proc
from .._checks import _is_int
from ._errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointNonFiniteError,
    CheckpointNotFoundError,
    why,
)
from ._finite import non_finite_paths, refusal
from ._layout import paths, scan_steps, step_name
from ._lock import check_unlocked, lock
from ._manifest import read_manifest, schema_error, type_name
from ._store import check_writable, restore_step


def check_new_run(directory, *, resume: bool, name: str = "checkpoint_dir",
                  resume_name: str = "resume=True") -> None:
    """Before training: ``directory`` is writable, not locked by another run, and holds no
    other run unless resuming.

    Raises ``CheckpointError`` (not writable), ``CheckpointLockedError`` or
    ``CheckpointExistsError``, so a run never fails after its first epoch, nor
    writes over another run. ``name``/``resume_name`` are how the caller
    spells the two arguments. Creates nothing.

    Args:
      directory: the checkpoint folder of the run about to start (any path).
      resume: bool, whether the run continues the checkpoints already there.
      name: how ``directory`` is spelled in messages.
      resume_name: how ``resume`` is spelled in messages.

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxnet.checkpoint import save
    >>> d = tempfile.mkdtemp()
    >>> check_new_run(d, resume=False)  # an empty folder: fine
    >>> _ = save(d, {"w": jnp.zeros(2)}, step=1)
    >>> check_new_run(d, resume=True)  # continuing it: fine
    >>> check_new_run(d, resume=False)
    Traceback (most recent call last):
    ...
    jaxnet.checkpoint.CheckpointExistsError: checkpoint_dir: ... already holds checkpoints ...
    """
    check_writable(directory, name=name)
    path, shown = paths(directory, name)
    check_unlocked(path, shown, name)
    steps = scan_steps(path, shown)
    if steps and not resume:
        raise CheckpointExistsError(
            f"{name}: {shown} already holds checkpoints (steps {steps}); pass "
            f"{resume_name} to continue that run, or use an empty folder")


def epoch_metadata(epoch: int, history: list[dict], config: dict | None) -> dict:
    """The metadata ``fit`` saves with each epoch's checkpoint, as ``resume`` reads it.

    Args:
      epoch: int, the epochs completed.
      history: the per-epoch dicts so far.
      config: the run's JSON-able configuration, or ``None``.

    Returns:
      ``{"epoch", "history", "config"}`` for ``save(..., metadata=)``.

    >>> epoch_metadata(2, [{"epoch": 1}, {"epoch": 2}], None)["epoch"]
    2
    """
    return {"epoch": epoch, "history": list(history), "config": config}


def resume_fields(meta: dict, step: int, shown_step: str) -> tuple[int, list, dict | None]:
    """``(epoch, history, config)`` of ``epoch_metadata``; malformed: ``CheckpointCorruptError``."""
    epoch, history, config = meta.get("epoch", step), meta.get("history", []), meta.get("config")
    if not _is_int(epoch) or epoch < 0:
        raise schema_error(shown_step, f"metadata 'epoch' must be a non-negative int, got "
                                       f"{type_name(epoch)}")
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise schema_error(shown_step, "metadata 'history' must be a list of dicts")
    if config is not None and not isinstance(config, dict):
        raise schema_error(shown_step, f"metadata 'config' must be a dict, got "
                                       f"{type_name(config)}")
    return epoch, history, config


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type_name(value)} {text[:40]}" if not _number(value) else text[:40]


_SECONDS = ("train_seconds", "seconds", "compile_seconds")  # finite and >= 0
_LOSSES = ("train_loss", "val_loss", "val_accuracy")  # numbers (NaN allowed)


def check_fit_metadata(epoch: int, history: list, step: int, shown_step: str) -> None:
    """What ``fit`` and its callers rely on in the metadata of a checkpoint ``fit`` wrote.

    ``fit`` saves epoch ``N`` as step ``N``; each history entry has an int
    ``epoch`` (increasing, the last one ``epoch``), numbers ``train_loss`` and
    ``train_seconds``, and, when present, an int ``run`` >= 0 and numeric
    ``seconds``/``compile_seconds``/``val_loss``/``val_accuracy``. Anything else
    is a damaged checkpoint (``CheckpointCorruptError`` naming the field), so a
    resume falls back to an older one instead of crashing after an epoch.

    >>> good = {"epoch": 1, "run": 0, "train_loss": 0.5, "train_seconds": 0.1}
    >>> check_fit_metadata(1, [good], 1, "ck/step_00000001")
    >>> check_fit_metadata(1, [{**good, "run": "x"}], 1, "ck/step_00000001")
    Traceback (most recent call last):
    ...
    jaxnet.checkpoint.CheckpointCorruptError: checkpoint ck/step_00000001: manifest.json is \
malformed: metadata history[0].run must be an int >= 0, got str 'x'
    """
    if epoch != step:
        raise schema_error(shown_step, f"metadata 'epoch' is {epoch}, but fit saves the "
                                       f"checkpoint of epoch N as step N (this is step {step})")
    previous = 0
    for i, entry in enumerate(history):
        where = f"metadata history[{i}]"
        value, last = entry.get("epoch"), i == len(history) - 1
        if not _is_int(value) or not previous < value <= epoch or (last and value != epoch):
            want = f"{epoch} (the last entry)" if last else f"above {previous} and below {epoch}"
            raise schema_error(shown_step, f"{where}.epoch must be an int {want}, got "
                                           f"{_shown(value)}")
        previous = value
        for key in ("train_loss", "train_seconds"):
            if key not in entry:
                raise schema_error(shown_step, f"{where}.{key} is missing (fit writes one "
                                               f"per epoch)")
        for key, value in entry.items():
            if key == "run" and not (_is_int(value) and value >= 0):
                raise schema_error(shown_step, f"{where}.run must be an int >= 0, got "
                                               f"{_shown(value)}")
            if key in _SECONDS and not (_number(value) and 0 <= value < float("inf")):
                raise schema_error(shown_step, f"{where}.{key} must be a number of seconds "
                                               f">= 0, got {_shown(value)}")
            if key in _LOSSES and not _number(value):
                raise schema_error(shown_step, f"{where}.{key} must be a number, got "
                                               f"{_shown(value)}")


def _same(a: Any, b: Any) -> bool:
    """JSON equality where ``true`` is not ``1``/``1.0`` (Python's ``True == 1``) and a
    list is not a tuple of other types; ``1 == 1.0`` (JSON has one number type)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _number(a) and _number(b):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def check_same_config(saved: dict | None, config: dict | None, directory) -> None:
    """A run resumes only with the configuration it started with; ``epochs`` may grow.

    Anything that depends on the number of epochs (a schedule's length) must
    be in ``config`` under its own key, so that growing ``epochs`` changes it
    and the resume is refused rather than silently different.

    Args:
      saved: the configuration saved with the checkpoint, or ``None``.
      config: this run's configuration, or ``None`` (nothing to compare).
      directory: the checkpoint folder, as the user gave it (for the message).

    Raises:
      ValueError: a key other than ``epochs`` differs; the message lists each.

    >>> check_same_config({"lr": 0.1, "epochs": 2}, {"lr": 0.1, "epochs": 5}, "ck")
    >>> check_same_config({"lr": 0.1}, {"lr": 0.2}, "ck")
    Traceback (most recent call last):
    ...
    ValueError: resume: ck was written by a run with another configuration: lr 0.1 (checkpoint) \
vs 0.2 (now); only epochs may change ...
    """
    if saved is None or config is None:
        return
    diff = config_diff(saved, config)
    if diff:
        raise ValueError(
            f"resume: {os.fspath(directory)} was written by a run with another configuration: "
            + diff + "; only epochs may change (a setting that follows epochs, such as a "
            "schedule's length, may not): resume with the settings it was started with, or "
            "train a new run in an empty folder")


def config_diff(saved: dict, config: dict, *, now: str = "now") -> str:
    """The settings other than ``epochs`` that differ, as ``"lr 0.1 (checkpoint) vs 0.2 (now)"``
    joined by commas; ``""`` when only ``epochs`` (or nothing) differs.

    A key one side leaves out (a setting at its default, such as precision
    float32) is named as the default, never as ``None``:

    >>> config_diff({"lr": 0.1, "epochs": 2}, {"lr": 0.2, "epochs": 5}, now="given")
    'lr 0.1 (checkpoint) vs 0.2 (given)'
    >>> config_diff({"precision": "bf16"}, {})
    "precision 'bf16' (checkpoint) vs the default (now)"
    """
    def shown(values: dict, k: str) -> str:
        return repr(values[k]) if k in values else "the default"

    keys = sorted(set(saved) | set(config))
    return ", ".join(f"{k} {shown(saved, k)} (checkpoint) vs {shown(config, k)} ({now})"
                     for k in keys if k != "epochs" and not _same(saved.get(k), config.get(k)))


def _move_aside(path: Path, shown: str, damaged: list, log: Callable[[str], Any]) -> None:
    """Rename each damaged checkpoint ``corrupt-step_...``: kept for inspection, never
    deleted, and its step free to be written again by the resumed run."""
    for bad_step, error in damaged:
        bad = path / step_name(bad_step)
        aside = bad.with_name(f"corrupt-{bad.name}-{time.time_ns()}")
        try:
            os.rename(bad, aside)
        except OSError as e:
            raise CheckpointError(f"resume: could not move the damaged checkpoint "
                                  f"{os.path.join(shown, bad.name)} aside: {why(e)} "
                                  f"({error})") from None
        log(f"warning: {error}; moved it to {aside.name}")


def _resume(directory, like: Any, log: Callable[[str], Any],
            check: Callable[[int, list, dict | None, int, str], None],
            check_finite: bool = False) -> tuple[Any, int, list, dict | None]:
    """``resume_state`` that calls ``check(epoch, history, config, step, shown_step)`` on
    each candidate before restoring it and before saying or changing anything (a
    ``CheckpointCorruptError`` there makes it damaged); each manifest is read once. With
    ``check_finite``, a restored state holding NaN/Inf is refused, changing nothing."""
    path, shown = paths(directory)
    with lock(directory, log=log):
        steps = scan_steps(path, shown)
        if not steps:
            log(f"resume: no complete checkpoint in {shown}; starting from scratch")
            return like, 0, [], None
        damaged: list[tuple[int, CheckpointCorruptError]] = []
        for step in reversed(steps):
            shown_step = os.path.join(shown, step_name(step))
            try:
                manifest = read_manifest(path, shown, step)
                epoch, history, config = resume_fields(manifest["metadata"], step, shown_step)
                check(epoch, history, config, step, shown_step)
                with _proc.signals_deferred():
                    state, _ = restore_step(path, shown, like, step, manifest)
            except CheckpointCorruptError as e:
                damaged.append((step, e))
                continue
            except CheckpointNotFoundError:
                continue
            bad = non_finite_paths(state) if check_finite else []
            if bad:
                raise CheckpointNonFiniteError(f"resume: {refusal(shown_step, bad)}; nothing "
                                               f"was changed")
            _move_aside(path, shown, damaged, log)
            log(f"resume: continuing from {shown_step} (epoch {epoch})")
            return state, epoch, list(history), config
        raise CheckpointCorruptError(f"no intact checkpoint in {shown} ({len(damaged)} "
                                     f"damaged, none changed); newest: {damaged[0][1]}")


def resume_state(directory, like: Any, *, log=print) -> tuple[Any, int, list, dict | None]:
    """Restore the newest intact checkpoint written by ``train.fit`` (holding the lock).

    Returns ``(state, epoch, history, config)`` (``config``: the run
    configuration saved with it). With no checkpoint at all it returns
    ``(like, 0, [], None)`` and says so. Any problem with a newer checkpoint
    (damaged files, a malformed manifest or metadata) is a
    ``CheckpointCorruptError``: that checkpoint is moved aside (renamed
    ``corrupt-step_...``, never deleted) with a warning in favour of an older
    intact one; if checkpoints exist but none is intact it raises
    ``CheckpointCorruptError`` and changes nothing, rather than start over.

    Args:
      directory: the checkpoint folder (any path).
      like: a pytree with the structure, shapes and dtypes to restore into
        (e.g. a fresh ``TrainState``); returned as is when there is nothing.
      log: called with one line saying where the run continues from.

    Returns:
      ``(state, epoch, history, config)``: the restored pytree, the int epoch
      stored in its metadata (default: its step), the list of per-epoch dicts
      and the configuration dict or ``None``.

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxnet.checkpoint import save
    >>> d = tempfile.mkdtemp()
    >>> like = {"w": jnp.zeros(2)}
    >>> resume_state(d, like, log=lambda line: None)
    ({'w': Array([0., 0.], dtype=float32)}, 0, [], None)
    >>> _ = save(d, {"w": jnp.ones(2)}, step=3, metadata={"epoch": 3, "history": [{"epoch": 3}]})
    >>> state, epoch, history, config = resume_state(d, like, log=lambda line: None)
    >>> state["w"].tolist(), epoch, history, config
    ([1.0, 1.0], 3, [{'epoch': 3}], None)
    """
    return _resume(directory, like, log, lambda *fields: None)


def resume(checkpoint_dir, state: Any, config: dict | None,
           log: Callable[[str], Any], *, check_finite: bool = False) -> tuple[Any, int, list[dict]]:
    """``fit``'s resume: the newest intact checkpoint, refused if its config differs.

    A checkpoint whose metadata ``fit`` cannot use (``check_fit_metadata``) is
    damaged: moved aside in favour of an older one, as damaged files are.

    Args:
      checkpoint_dir: the run's checkpoint folder (any path).
      state: the fresh state (restored into; returned as is when there is nothing).
      config: this run's configuration, or ``None`` (not compared).
      log: called with each line (where the run continues from, warnings).
      check_finite: refuse a checkpoint holding NaN/Inf (``CheckpointNonFiniteError``
        naming the step and the values); ``fit`` passes its ``check_finite``.

    Returns:
      ``(state, start_epoch, history)``.

    Raises:
      ValueError: the checkpoint was written with another configuration (before
        anything is said, moved or restored); ``CheckpointError``s as ``resume_state``.

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxnet.checkpoint import save
    >>> d = tempfile.mkdtemp()
    >>> _ = save(d, {"w": jnp.ones(2)}, step=1, metadata=epoch_metadata(1, [], {"lr": 0.1}))
    >>> resume(d, {"w": jnp.zeros(2)}, {"lr": 0.1, "epochs": 3}, print)[1:]
    resume: continuing from .../step_00000001 (epoch 1)
    (1, [])
    """
    def check(epoch, history, saved, step, shown_step):
        check_fit_metadata(epoch, history, step, shown_step)
        check_same_config(saved, config, checkpoint_dir)

    state, epoch, history, _ = _resume(checkpoint_dir, state, log, check, check_finite)
    return state, epoch, history
