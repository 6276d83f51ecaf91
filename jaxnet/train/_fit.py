"""``fit``: loaders → callbacks → the run protocol (lock, resume) → the epoch loop."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .. import _compile_cache, nn, parallel
from .. import callbacks as cb
from .._checks import positive_int, seed_int
from ..nn._functional import check_live
from ..nn._requires_grad import check as check_requires_grad
from ._batches import Batches, as_loader
from ._continue import carry_epochs, continued_epochs, record_epochs
from ._epoch import epoch_runner
from ._evaluate import evaluate
from ._inputs import check_apply, check_not_empty, check_optimizer, label_checked
from ._precision import check_precision
from ._state import TrainState
from ._step import Apply, LossFn, check_optimizer_attributes, first_non_finite


@jax.jit
def _copy(tree):
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """What ``fit`` does besides training: batching of non-``DataLoader`` data,
    the built-in callbacks, and the run protocol (checkpoints, resume).

    The fields are ``fit``'s keywords of the same names; see ``fit``.

    >>> FitOptions(batch_size=32, log=None).keep
    3
    >>> FitOptions(keep=0)
    Traceback (most recent call last):
    ...
    ValueError: keep: expected a positive int, got 0
    """

    batch_size: int | None = None
    shuffle: bool | None = None
    seed: int | None = None
    check_finite: bool = True
    checkpoint_dir: Any = None
    keep: int = 3
    resume: bool = False
    config: dict | None = None
    progress: bool = True
    log: Callable[[str], Any] | None = print

    def __post_init__(self):
        if self.seed is not None:
            seed_int("seed", self.seed)
        if self.batch_size is not None:
            positive_int("batch_size", self.batch_size)
        positive_int("keep", self.keep)

    def for_this_process(self) -> FitOptions:
        """Only the primary process writes and prints, like DDP's rank 0."""
        if parallel.is_primary():
            return self
        return dataclasses.replace(self, checkpoint_dir=None, progress=False, log=None)

    def callbacks(self) -> list[cb.Callback]:
        """The built-in callbacks these options ask for, in their order."""
        out: list[cb.Callback] = []
        if self.check_finite:
            out.append(cb.FiniteCheck())  # before Checkpoint: a poisoned state is never saved
        if self.checkpoint_dir is not None:
            out.append(cb.Checkpoint(self.checkpoint_dir, keep=self.keep))
        if self.progress:
            out.append(cb.ProgressBar())
        if self.log is not None:
            out.append(cb.EpochLog(self.log))
        return out


def _check_epochs(epochs) -> int:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative int, got {epochs!r}")
    return epochs


def _start_run(stack: contextlib.ExitStack, state: TrainState, options: FitOptions,
               mesh, steps_per_epoch: int, epochs: int) -> tuple[TrainState, int, list[dict]]:
    """Lock the checkpoint folder (until ``stack`` closes), refuse to overwrite, resume.

    Returns:
      ``(state, start_epoch, history)``: as given for a new run (continuing
      the epochs a trained state has done); the checkpoint's for a resumed
      one; process 0's on every process of a mesh.
    """
    start_epoch, history, restored = 0, [], False
    directory = options.checkpoint_dir
    try:  # on a mesh of several processes, a failure here stops each with one line
        if directory is not None:
            from .. import checkpoint
            from ..checkpoint._runs import resume

            stack.enter_context(checkpoint.lock(directory, log=options.log))
            checkpoint.check_new_run(directory, resume=options.resume)
            if options.resume:
                given = state
                state, start_epoch, history = resume(directory, state, options.config,
                                                     options.log or (lambda _: None),
                                                     check_finite=options.check_finite)
                restored = state is not given
        if not restored:
            start_epoch = continued_epochs(state, steps_per_epoch, epochs, options.log)
    except Exception as e:  # noqa: BLE001  # raised again here, one line in the others
        if mesh is None:
            raise
        parallel.check_together(failure=e)
    if mesh is not None:  # the processes agree on what decides their steps, or all stop
        config = {f"config[{k!r}]": v for k, v in (options.config or {}).items()}
        parallel.check_together({"epochs": epochs, "batches per epoch": steps_per_epoch,
                                 **config})
        state, start_epoch, history = parallel.start_from_primary(mesh, state, start_epoch,
                                                                  history)
    return state, start_epoch, history


def _epoch_begin(run: cb.Run, begin: list, state: TrainState, epoch: int) -> TrainState:
    """The ``on_epoch_begin`` hooks, in order; each gets the state the previous one returned.

    A hook returns ``None`` (no change) or the new state (``optim.set_learning_rate``),
    which the epoch trains from. ``begin`` lists the learner's callbacks before the
    built-in ones, so ``FiniteCheck`` keeps the state the epoch really starts from.
    """
    for c in begin:
        new = c.on_epoch_begin(run, epoch, state)
        if new is None or new is state:
            continue
        hook = f"{type(c).__name__}.on_epoch_begin"
        if not isinstance(new, TrainState):
            raise TypeError(
                f"on_epoch_begin: expected None or the new TrainState, got "
                f"{type(new).__name__} from {hook}; return None to leave the state as it "
                f"is, or the state to train from (return optim.set_learning_rate(state, lr))")
        if jax.tree.structure(new) != jax.tree.structure(state):
            raise ValueError(
                f"on_epoch_begin: expected a state of the same structure as the one it "
                f"received (the optimizer fit was given keeps training it), got another from "
                f"{hook}; change values with state.replace(...) or optim.set_learning_rate")
        check_live(new, "state", "return optim.set_learning_rate(state, lr)")
        state = new
    return state


def _run_epoch(runner, run: cb.Run, callbacks, state, epoch: int, val_loader, val_options,
               begin: list) -> tuple:
    """Train one epoch (``epoch`` counts from 1), validate, and build its history entry."""
    t0 = time.perf_counter()
    state = _epoch_begin(run, begin, state, epoch)

    def on_batch(i, loss):
        for c in callbacks:
            out = c.on_batch_end(run, i, loss)
            if out is not None:
                raise TypeError(
                    f"on_batch_end: expected None, got {type(out).__name__}"
                    f" from {type(c).__name__}.on_batch_end; a batch hook only observes (an "
                    f"epoch's batches run as one compiled scan): change the state in "
                    f"on_epoch_begin (return the new state), stop in on_epoch_end (return True)")

    state, losses, counts, compile_seconds = runner(state, epoch - 1, on_batch)
    logs: dict[str, Any] = {"epoch": epoch}
    if compile_seconds:
        logs["compile_seconds"] = compile_seconds
    logs["train_seconds"] = time.perf_counter() - t0 - compile_seconds
    logs["train_loss"] = float(np.sum(losses * counts) / np.sum(counts))
    if val_loader is not None:
        val = evaluate(run.apply, state, val_loader, loss_fn=run.loss_fn, **val_options)
        logs.update({f"val_{k}": v for k, v in val.items()})
    logs["seconds"] = time.perf_counter() - t0
    return state, logs


def _stop(c: cb.Callback, run: cb.Run, epoch: int, state, logs: dict) -> bool:
    """``c.on_epoch_end``'s answer: ``True`` stops; anything but a bool or ``None`` is refused
    (a returned ``TrainState`` is truthy: it would stop training, silently)."""
    out = c.on_epoch_end(run, epoch, state, logs)
    if out is None or isinstance(out, bool | np.bool_):
        return bool(out)
    raise TypeError(
        f"on_epoch_end: expected True (stop), False or None, got {type(out).__name__} from "
        f"{type(c).__name__}.on_epoch_end; to train on from a changed state (a new learning "
        f"rate), return it from on_epoch_begin: return optim.set_learning_rate(state, lr)")


def _check_state(state) -> None:
    """``fit(model, ...)`` or ``fit(params, ...)``: one line naming ``TrainState.create``."""
    if isinstance(state, TrainState):
        return
    fix = ("write apply, params, model_state = nn.split(model); state = TrainState.create("
           "params, optimizer, model_state=model_state); then fit(state, apply, ...)")
    if isinstance(state, nnx.Module):
        raise TypeError(f"state: expected a TrainState, got the model {type(state).__name__} "
                        f"itself; {fix}")
    raise TypeError(f"state: expected a TrainState, got {type(state).__name__}; {fix}")


def _epoch_loop(run: cb.Run, runner, callbacks: list, state, val_loader, val_options,
                begin: list | None = None) -> TrainState:
    """The callbacks' hooks around each epoch from ``run.start_epoch + 1`` to ``run.epochs``.

    ``begin``: the order of the ``on_epoch_begin`` hooks (default: ``callbacks``'s).
    """
    begin = callbacks if begin is None else begin
    run_index = 1 + max((e.get("run", 0) for e in run.history), default=-1)
    started: list[cb.Callback] = []
    try:
        for c in callbacks:
            c.on_train_begin(run)
            started.append(c)
        for epoch in range(run.start_epoch + 1, run.epochs + 1):
            state, logs = _run_epoch(runner, run, callbacks, state, epoch, val_loader,
                                     val_options, begin)
            logs["run"] = run_index
            run.history.append(logs)
            if any([_stop(c, run, epoch, state, logs) for c in callbacks]):  # all run
                break
    finally:
        for c in started:
            c.on_train_end(run, state)
    return state


def fit(state: TrainState, apply: Apply, loss_fn: LossFn,
        optimizer: optax.GradientTransformation, train_data, *, epochs: int,
        batch_size: int | None = None, shuffle: bool | None = None, seed: int | None = None,
        val_data=None, callbacks: Iterable[cb.Callback] = (), check_finite: bool = True,
        checkpoint_dir=None, keep: int = 3, resume: bool = False, config: dict | None = None,
        progress: bool = True, log: Callable[[str], Any] | None = print, mesh=None,
        precision: str = "float32") -> tuple[TrainState, list[dict]]:
    """Train for ``epochs`` epochs; return the final state and the per-epoch history.

    The loop: (resume) → for each epoch: callbacks' ``on_epoch_begin`` (yours
    first; one may return a new state to train from) → one
    epoch (``make_epoch_runner``) → validation (``evaluate``) → callbacks'
    ``on_epoch_end`` (any may stop training) → ``on_train_end``.

    Args:
      state: initial ``TrainState`` (also the template when resuming).
      apply, loss_fn, optimizer: as for ``make_train_step``.
      train_data: ``(x, y)`` arrays, a ``Dataset`` or a ``DataLoader``.
      epochs: the epoch to stop after, counting from 1 (Keras's ``epochs``):
        a fresh state trains ``epochs`` epochs; a state that has trained
        (``state.step`` > 0, a whole number of epochs of ``train_data``), such
        as the one a previous ``fit`` returned, and a resumed run continue
        from the epoch after theirs up to it, with the epoch numbers, data
        order and keys of one uninterrupted run (``fit(s, epochs=3)`` then
        ``fit(s, epochs=6)`` equals ``fit(s, epochs=6)`` bit for bit; the
        log says "continuing at epoch 4"). A state already at ``epochs`` or
        past it is refused, naming the ``epochs=`` to pass.
      batch_size, shuffle, seed: batching when ``train_data`` is not a
        ``DataLoader`` (defaults 64, True, 0); passing them with a
        ``DataLoader`` is an error. The order of epoch ``e`` depends only on
        ``(seed, e)``.
      val_data: optional data (like ``train_data``) evaluated after every
        epoch; its metrics appear as ``val_loss``/``val_accuracy``.
      callbacks: your ``Callback`` objects, run after the built-in ones.
      check_finite: stop with ``NonFiniteError`` naming the epoch, step and
        parameter of a NaN/Inf (the ``FiniteCheck`` callback).
      checkpoint_dir: save the state after every epoch there (keep the last
        ``keep``; the ``Checkpoint`` callback); the folder is locked for the
        run. With ``resume=True`` continue from its newest intact checkpoint.
      config: JSON-able run configuration stored with each checkpoint; a
        resume with a different one (other than more ``epochs``) is refused.
      progress: show a tqdm progress bar (the ``ProgressBar`` callback).
      log: called with one line per epoch (the ``EpochLog`` callback; ``None``
        for silence).
      mesh: train data parallel on a ``parallel.make_mesh()`` mesh: the state
        replicated, every batch split over the devices (``batch_size`` must
        be a multiple of their number), the same steps. In a multi-process
        run only process 0 checkpoints, resumes, logs and shows progress; the
        others start from its state.
      precision: ``"float32"`` or ``"bf16"``, as for ``make_train_step``; the
        validation computes in it too.

    Returns:
      ``(state, history)``; ``history[i]`` has ``epoch``, ``train_loss``,
      ``train_seconds`` (training only), ``seconds`` (with validation),
      ``run`` (0 for the first process, +1 per resume), ``compile_seconds``
      on an epoch that compiled, and the ``val_*`` metrics.

    The model ``apply`` came from (``nn.split(model)``) now holds the trained
    weights (and BatchNorm statistics), as after Keras's ``fit``: ``model(x)``
    and ``nn.state_dict(model)`` are the trained model's. That includes a run
    a callback stopped early. When ``fit`` raises (NaN/Inf, Ctrl-C, a
    callback's error) the model is left as it was, as no state came back
    either (``checkpoint_dir`` keeps the finished epochs). The ``state`` you
    pass is copied, never consumed: run the cell again, or
    ``evaluate(apply, state, ...)``, freely.

    >>> import optax
    >>> from jaxnet import nn, losses
    >>> apply, params, model_state = nn.split(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
    >>> state, history = fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data,
    ...                      epochs=1, batch_size=4, val_data=data, progress=False, log=None)
    >>> int(state.step), history[0]["epoch"], history[0]["val_accuracy"]
    (2, 1, 0.5)
    """
    options = FitOptions(batch_size, shuffle, seed, check_finite, checkpoint_dir, keep, resume,
                         config, progress, log)
    epochs, precision = _check_epochs(epochs), check_precision(precision)
    _check_state(state)
    check_optimizer_attributes(optimizer)
    check_apply(apply)
    check_not_empty(train_data, "train_data")
    if val_data is not None:
        check_not_empty(val_data, "val_data")
    loader = as_loader(train_data, "train_data", batch_size=batch_size, shuffle=shuffle,
                       seed=seed)
    val_loader = None if val_data is None else as_loader(
        val_data, "val_data", defaults=(1000, False, 0), round_to=1 if mesh is None else mesh.size)
    model = getattr(apply, "model", None)  # the model nn.split(model) made apply from
    if model is not None:  # requires_grad set after nn.split: refused, not ignored
        check_requires_grad(model, metadata=True)
    check_live(state, "state", "state, history = fit(state, ...)")
    check_optimizer(state, optimizer)
    _compile_cache.enable()  # warm starts: compiled programs kept on disk (a no-op once on)
    # Labels on the host, before anything compiles: an array dataset's once per fit, a
    # per-item dataset's batch by batch as they are fetched (jit would wrap -1 to class C-1).
    batches = label_checked(Batches(loader, mesh), apply, state.params, state.model_state,
                            train=True, rng=state.rng)
    if val_loader is not None:
        label_checked(Batches(val_loader, mesh, name="val_data"), apply, state.params,
                      state.model_state, loss_fn=loss_fn)
    runner = epoch_runner(apply, loss_fn, optimizer, batches, precision)
    options = options.for_this_process()
    builtin, callbacks = options.callbacks(), list(callbacks)
    begin = [*callbacks, *builtin]  # yours may return a new state; the built-ins see it
    callbacks = [*builtin, *callbacks]
    # One copy of the caller's state: the compiled epochs donate theirs, never the caller's,
    # so a notebook cell run twice, or evaluate(apply, state, ...) afterwards, still works.
    check_live(state, "state", "state, history = fit(state, ...)")
    state = carry_epochs(state, _copy(state))  # and how many epochs it has trained
    with contextlib.ExitStack() as stack:
        state, start_epoch, history = _start_run(stack, state, options, mesh, len(loader),
                                                 epochs)
        run = cb.Run(apply, loss_fn, optimizer, loader, epochs, start_epoch, list(history),
                     options.config)
        run.find_non_finite = functools.partial(_replay, run, batches, precision)
        state = _epoch_loop(run, runner, callbacks, state, val_loader,
                            {"mesh": mesh, "precision": precision}, begin)
    model = getattr(apply, "model", None)
    if model is not None:
        nn.update(model, state)
    record_epochs(state, run.history, len(loader))  # for a continued fit on other data
    return state, run.history


def _replay(run: cb.Run, batches: Batches, precision: str, state, epoch: int):
    """``Run.find_non_finite``: replay epoch ``epoch`` (from 1) from ``state``, step by step."""
    return first_non_finite(run.apply, run.loss_fn, run.optimizer, state,
                            batches.host_batches(epoch - 1), precision)
