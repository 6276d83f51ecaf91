"""Training the MNIST MLP: the data, the model, the optimizer and ``train_mnist``.

``train_mnist(config)`` is what ``jaxnet train mnist`` runs: load verified
MNIST, hold out a seeded validation split of the 60,000 training images,
build ``MLP(784, hidden, 10)``, train with ``fit`` on the fast (whole-epoch
``lax.scan``) path with validation after every epoch, and evaluate on the
test set once, at the end. Train, validation and test stay three different
things: recipes are chosen on validation only.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from .. import datasets, losses, nn
from .._tree import fingerprint
from ..data import ArrayDataset, random_split
from ..train import TrainState, evaluate, fit
from ._config import CLASSES, PIXELS, MnistConfig


def steps_per_epoch(config: MnistConfig, n_images: int = 60_000) -> int:
    """Optimizer steps per epoch on ``n_images`` MNIST training images less the validation
    split (the last batch is padded, not dropped).

    Args:
      config: an ``MnistConfig`` (its ``val_split`` and ``batch_size``).
      n_images: int, training images before the validation split.

    Returns:
      int, ``ceil((n_images - val_split) / batch_size)``.

    >>> steps_per_epoch(MnistConfig())  # (60000 - 5000) / 128, rounded up
    430
    """
    return math.ceil((n_images - config.val_split) / config.batch_size)


def make_optimizer(config: MnistConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimizer of ``config``: Adam or SGD, constant or warm-up + cosine.

    Args:
      config: an ``MnistConfig`` (``optimizer``, ``lr``, ``momentum``,
        ``schedule``, ``epochs``).
      steps_per_epoch: int, optimizer steps per epoch (the schedule's length
        is ``epochs * steps_per_epoch``).

    Returns:
      An ``optax.GradientTransformation``.

    >>> import numpy as np
    >>> opt = make_optimizer(MnistConfig(optimizer="sgd", schedule="constant", lr=0.5), 10)
    >>> params = {"w": jnp.ones(2)}
    >>> updates, _ = opt.update({"w": jnp.ones(2)}, opt.init(params), params)
    >>> np.asarray(updates["w"]).tolist()
    [-0.5, -0.5]
    """
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        lr = config.lr
    else:  # 10% linear warm-up, then cosine decay to 1% of the peak
        lr = optax.warmup_cosine_decay_schedule(0.0, config.lr, max(1, total // 10), total,
                                                end_value=config.lr / 100)
    if config.optimizer == "adam":
        return optax.adam(lr)
    return optax.sgd(lr, momentum=config.momentum or None)


def load_data(data_dir=None, source: str = "idx"):
    """``((x_train, y_train), (x_test, y_test))``: raw uint8 pixels ``(N, 784)``, int32 labels.

    The pixels stay uint8 (47 MB for the training set instead of 188 MB as
    float32); ``normalize`` runs inside the jitted step instead.

    Args:
      data_dir: optional folder of the four IDX files (as for
        ``datasets.load_mnist``; default: jaxnet's data folder, downloaded).
      source: ``"idx"`` (numpy only) or ``"tfds"``.

    Returns:
      ``((x_train uint8 (N, 784), y_train int32 (N,)), (x_test uint8 (M, 784),
      y_test int32 (M,)))``.

    The example reads tiny IDX files of its own (not MNIST; a note that they
    are not the official files is logged):

    >>> import os, struct, tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> def write_idx(name, a):  # magic 0x0000 08 ndim, big-endian dims, uint8 data
    ...     with open(os.path.join(folder, name), "wb") as f:
    ...         f.write(struct.pack(f">{1 + a.ndim}I", 0x800 + a.ndim, *a.shape) + a.tobytes())
    >>> for prefix, n in (("train", 6), ("t10k", 4)):
    ...     write_idx(f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
    ...     write_idx(f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
    >>> (x, y), (x_test, y_test) = load_data(folder)
    >>> x.shape, x.dtype, y.dtype, x_test.shape
    ((6, 784), dtype('uint8'), dtype('int32'), (4, 784))
    """
    out = []
    for split in ("train", "test"):
        images, labels = datasets.load_mnist(split, data_dir, source=source)
        out.append((images.reshape(len(images), -1), labels))
    return tuple(out)


def normalize(x):
    """The course's ``ToTensor()`` + ``Normalize((0.5,), (0.5,))``, as a jittable function.

    Args:
      x: uint8 pixels in [0, 255], any shape.

    Returns:
      float32 array of ``x``'s shape, in [-1, 1].

    >>> normalize(jnp.array([0, 255], jnp.uint8)).tolist()
    [-1.0, 1.0]
    """
    return datasets.scale_pixels(jnp.asarray(x, jnp.float32))


def on_pixels(model_apply):
    """``apply`` on uint8 pixels: ``model_apply`` of them normalised inside the step.

    They are normalised into the parameters' dtype: bfloat16 under
    ``precision="bf16"`` (the policy casts float inputs only, and pixels are
    integers), so the first layer's matmul computes in bfloat16 too; float32
    otherwise, the same step as ``model_apply(params, state, normalize(pixels))``.

    Args:
      model_apply: ``nn.split(model).apply`` of a model on ``(batch, 784)`` floats.

    Returns:
      ``apply(params, model_state, pixels, **mode)``, pixels uint8 ``(batch, 784)``.

    >>> model_apply, params, state = nn.split(build_model(MnistConfig(hidden=(8,))))
    >>> out, _ = on_pixels(model_apply)(params, state, jnp.zeros((2, 784), jnp.uint8))
    >>> out.shape, str(out.dtype)
    ((2, 10), 'float32')
    """
    def apply(params, model_state, pixels, **mode):
        dtype = jax.tree.leaves(params)[0].dtype
        return model_apply(params, model_state, normalize(pixels).astype(dtype), **mode)

    return apply


def split_validation(x, y, val_split: int, seed: int):
    """``((x_train, y_train), (x_val, y_val) | None)``: ``val_split`` examples held out at
    random, a pure function of ``seed`` (``random_split``'s order).

    Args:
      x: array ``(N, ...)``, the examples.
      y: array ``(N,)``, the labels.
      val_split: int in [0, N), examples held out (0: no validation set).
      seed: int in [0, 2**32), which examples are held out.

    Returns:
      ``((x_train, y_train), (x_val, y_val))`` with ``N - val_split`` and
      ``val_split`` rows, or ``((x, y), None)`` when ``val_split`` is 0.

    >>> import numpy as np
    >>> (x_train, y_train), (x_val, y_val) = split_validation(
    ...     np.zeros((10, 3)), np.arange(10), val_split=2, seed=0)
    >>> x_train.shape, x_val.shape, sorted(y_train.tolist() + y_val.tolist()) == list(range(10))
    ((8, 3), (2, 3), True)
    """
    if val_split == 0:
        return (x, y), None
    if val_split >= len(x):
        raise ValueError(f"val_split: expected fewer than the {len(x)} training images, "
                         f"got {val_split}")
    train, val = random_split(ArrayDataset(x, y), [len(x) - val_split, val_split], seed=seed)
    return train.arrays, val.arrays


def build_model(config: MnistConfig) -> nn.MLP:
    """``MLP(784, hidden, 10)`` of ``config`` (log-softmax output for the NLL loss).

    Args:
      config: an ``MnistConfig`` (``hidden``, ``seed``, ``dropout``, ``loss``).

    Returns:
      An ``nn.MLP`` mapping float32 ``(batch, 784)`` to ``(batch, 10)``.

    >>> model = build_model(MnistConfig(hidden=(8,)))
    >>> model(jnp.zeros((2, 784))).shape
    (2, 10)
    """
    return nn.MLP(PIXELS, list(config.hidden), CLASSES, rngs=config.seed, dropout=config.dropout,
                  output_activation="log_softmax" if config.loss == "nll" else "identity")


def train_mnist(config: MnistConfig, *, data=None, data_dir=None, source: str = "idx",
                checkpoint_dir=None, resume: bool = False, keep: int = 3,
                check_finite: bool = True, progress: bool = True, log=print,
                callbacks=(), mesh=None) -> dict:
    """Train the MNIST MLP; return the results (see ``jaxnet train mnist --json``).

    Args:
      config: an ``MnistConfig`` (e.g. ``RECIPES["default"]``).
      data: optional preloaded ``load_data()`` output.
      data_dir, source: where and how to load MNIST (``datasets.load_mnist``).
      checkpoint_dir, resume, keep: save after every epoch / continue a run;
        a run resumes only with the configuration it was started with.
      check_finite: stop on a NaN/Inf loss or gradient.
      progress, log: progress bar and per-epoch lines.
      callbacks: extra ``jaxnet.callbacks.Callback`` objects for ``fit``.
      mesh: train and evaluate data parallel over a ``parallel.make_mesh()``
        mesh (``config.batch_size`` is the global batch; it must be a
        multiple of the device count). In a multi-process run every process
        calls this; process 0 alone logs and checkpoints.

    Returns:
      dict with ``test_accuracy``, ``test_loss``, ``val_accuracy`` (``None``
      without a validation split), ``epoch_seconds``, ``compile_seconds``,
      ``train_seconds`` (this process), ``train_seconds_total`` (every
      epoch, including those before a resume), ``params_fingerprint``,
      ``history``, ``config``, ``devices`` (how many trained) and ``state``
      (the final ``TrainState``).

    The example trains on random stand-in data, not MNIST:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> def fake(n):
    ...     return (rng.integers(0, 256, (n, 784), dtype=np.uint8),
    ...             rng.integers(0, 10, n).astype(np.int32))
    >>> config = MnistConfig(epochs=1, batch_size=16, hidden=(8,), val_split=8)
    >>> result = train_mnist(config, data=(fake(40), fake(16)), progress=False, log=None)
    >>> len(result["history"]), result["devices"], 0 <= result["test_accuracy"] <= 1
    (1, 1, True)
    """
    (x_all, y_all), (x_test, y_test) = data if data is not None else load_data(data_dir, source)
    (x, y), val = split_validation(x_all, y_all, config.val_split, config.seed)
    if config.batch_size > len(x):
        raise ValueError(f"batch_size: expected at most the {len(x)} training images, got "
                         f"{config.batch_size}")
    model_apply, params, model_state = nn.split(build_model(config))
    apply = on_pixels(model_apply)

    if config.loss == "nll":
        loss_fn = losses.nll_loss
    else:
        loss_fn = functools.partial(losses.cross_entropy, label_smoothing=config.label_smoothing)
    steps = steps_per_epoch(config, len(x_all))
    optimizer = make_optimizer(config, steps)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=config.seed)
    state, history = fit(state, apply, loss_fn, optimizer, (x, y), epochs=config.epochs,
                         batch_size=config.batch_size, seed=config.seed, val_data=val,
                         check_finite=check_finite, checkpoint_dir=checkpoint_dir, keep=keep,
                         resume=resume, config=config.to_json(steps), progress=progress,
                         log=log, callbacks=callbacks, mesh=mesh, precision=config.precision)
    test = evaluate(apply, state, (x_test, y_test), loss_fn=loss_fn, mesh=mesh,
                    precision=config.precision)
    compile_s = [e["compile_seconds"] for e in history if "compile_seconds" in e]
    this_run = max((e.get("run", 0) for e in history), default=0)
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": history[-1].get("val_accuracy") if history else None,
        "epoch_seconds": [e["train_seconds"] for e in history],
        "compile_seconds": compile_s[-1] if compile_s else 0.0,
        "train_seconds": float(sum(e["train_seconds"] for e in history
                                   if e.get("run", 0) == this_run)),
        "train_seconds_total": float(sum(e["train_seconds"] for e in history)),
        "params_fingerprint": fingerprint(state.params),
        "history": history,
        "config": config.to_json(),
        "devices": 1 if mesh is None else mesh.size,
        "state": state,
    }
