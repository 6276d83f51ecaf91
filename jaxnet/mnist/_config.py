"""``MnistConfig``, every setting of a MNIST run, and the named ``RECIPES``.

The one source of the settings: ``jaxnet train mnist`` and ``jaxnet convert``
generate their flags from these fields (``jaxnet/cli/_flags.py``); a field's
``metadata`` holds its choices and its flag's help.

Recipes (``RECIPES``):

* ``"course"`` — exactly the course: log-softmax + NLL, Adam lr 0.01,
  batch 64, 5 epochs, constant learning rate, all 60,000 images for
  training (``val_split=0``).
* ``"default"`` — the same model and epochs, chosen on the 5,000-image
  validation split (``benchmarks/recipe_search.py``) to keep the course's
  promise of >= 0.98 test accuracy: cross-entropy on logits with label
  smoothing 0.1, Adam with a 10% warm-up to 2e-3 then cosine decay,
  batch 128.

>>> MnistConfig().with_updates(lr=1e-3).lr
0.001
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .._checks import SEED_LIMIT, non_negative_int, positive_int, seed_int

PIXELS, CLASSES = 784, 10  # the MLP's input (28 x 28 flattened) and output sizes
INT32_MAX = 2**31 - 1  # the step counter is int32; XLA's sizes fit it too
MAX_HIDDEN_LAYERS = 100  # deeper MLPs overflow XLA's compiler stack (a crash, not an error)


@dataclass(frozen=True)
class MnistConfig:
    """Every setting a MNIST run depends on (stored with its checkpoints).

    Frozen and validated on construction (a bad value raises ``ValueError``).

    Args:
      epochs: positive int, passes over the training images.
      batch_size: positive int, examples per optimizer step.
      optimizer: ``"adam"`` or ``"sgd"``.
      lr: positive float, the (peak, with a schedule) learning rate.
      momentum: float in [0, 1), SGD only (0 with Adam, which has none).
      schedule: ``"constant"`` or ``"warmup_cosine"`` (10% warm-up, then cosine).
      hidden: tuple of positive ints, the hidden layer sizes.
      seed: int in [0, 2**32): initialization, validation split, shuffling, Dropout.
      loss: ``"cross_entropy"`` on logits or ``"nll"`` on log-softmax outputs.
      label_smoothing: float in [0, 1), ``"cross_entropy"`` only.
      dropout: probability in [0, 1) after every hidden activation.
      val_split: non-negative int, training images held out for validation.
      precision: ``"float32"`` or ``"bf16"``: the forward pass in bfloat16, the
        weights, optimizer state, gradients and loss in float32 (``fit``'s).

    >>> config = MnistConfig(epochs=1, hidden=(8,))
    >>> config.batch_size, config.to_json()["hidden"]
    (128, [8])
    """

    # metadata: "choices" (checked here, offered by the flag) and "help" (the flag's help)
    epochs: int = 5
    batch_size: int = field(default=128, metadata={
        "help": "at most the number of training images"})
    optimizer: str = field(default="adam", metadata={"choices": ("adam", "sgd")})
    lr: float = field(default=2e-3, metadata={  # the peak learning rate with a schedule
        "help": "(peak) learning rate"})
    momentum: float = field(default=0.0, metadata={"help": "SGD momentum in [0, 1)"})  # sgd
    schedule: str = field(default="warmup_cosine", metadata={
        "choices": ("constant", "warmup_cosine")})
    hidden: tuple[int, ...] = field(default=(512, 256), metadata={
        "help": "hidden layer sizes, e.g. 512,256"})
    seed: int = field(default=0, metadata={"help": f"an int in [0, {SEED_LIMIT - 1}]"})
    loss: str = field(default="cross_entropy", metadata={  # on logits | on log-softmax
        "choices": ("cross_entropy", "nll")})
    label_smoothing: float = 0.1  # cross_entropy only, as F.cross_entropy's
    dropout: float = field(default=0.0, metadata={  # after every hidden activation
        "help": "nn.Dropout(p) after every hidden activation (default 0: none)"})
    val_split: int = field(default=5000, metadata={  # held out for validation, seeded by seed
        "help": "training images held out for validation (default recipe 5000, course 0)"})
    precision: str = field(default="float32", metadata={  # fit's precision= policy
        "choices": ("float32", "bf16"),
        "help": "bf16: the forward pass in bfloat16, weights, gradients and loss in float32 "
                "(faster for large matmuls on CPUs with AVX512-BF16 and on GPUs)"})

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if positive_int(name, getattr(self, name)) > INT32_MAX:
                raise ValueError(f"{name}: expected an int in [1, {INT32_MAX}], got "
                                 f"{getattr(self, name)!r}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name}: expected one of {choices}, got "
                                 f"{getattr(self, f.name)!r}")
        if not isinstance(self.lr, int | float) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr: expected a positive finite number, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {self.momentum!r}")
        if self.momentum and self.optimizer != "sgd":  # it would be silently ignored
            raise ValueError(f"momentum: expected 0 with optimizer={self.optimizer!r} (Adam has "
                             f"no momentum term), got {self.momentum!r}; use optimizer='sgd' "
                             f"to train with momentum")
        if not self.hidden or any(not isinstance(h, int) or isinstance(h, bool)
                                  or not 0 < h <= INT32_MAX for h in self.hidden):
            raise ValueError(f"hidden: expected layer sizes in [1, {INT32_MAX}] such as "
                             f"(512, 256), got {self.hidden!r}")
        if len(self.hidden) > MAX_HIDDEN_LAYERS:
            raise ValueError(f"hidden: expected at most {MAX_HIDDEN_LAYERS} hidden layers, got "
                             f"{len(self.hidden)}")
        if not 0 <= self.label_smoothing < 1 or (self.label_smoothing and self.loss == "nll"):
            raise ValueError(f"label_smoothing: expected a number in [0, 1) with "
                             f"loss='cross_entropy', got {self.label_smoothing!r} "
                             f"with loss={self.loss!r}")
        seed_int("seed", self.seed)
        non_negative_int("val_split", self.val_split)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) \
                or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout!r}")

    def with_updates(self, **changes: Any) -> MnistConfig:
        """A copy with ``changes`` applied (``None`` values are ignored).

        Args:
          **changes: field names and new values; ``None`` keeps the old value.

        Returns:
          A new, validated ``MnistConfig``.

        >>> MnistConfig().with_updates(epochs=2, lr=None).epochs
        2
        """
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self, steps_per_epoch: int | None = None) -> dict:
        """The settings as JSON; with ``steps_per_epoch``, also the learning-rate schedule's
        length in steps, which depends on ``epochs`` (so a resume that changes it is refused).

        Args:
          steps_per_epoch: optional int, optimizer steps per epoch.

        Returns:
          A dict of the fields (``hidden`` as a list), plus ``schedule_steps``
          (int) with ``steps_per_epoch`` and a non-constant schedule.
          ``precision`` is left out when it is ``"float32"``, so the
          checkpoints written before it existed resume unchanged.

        >>> MnistConfig(epochs=2).to_json(steps_per_epoch=430)["schedule_steps"]
        860
        """
        out = {**dataclasses.asdict(self), "hidden": list(self.hidden)}
        if self.precision == "float32":  # the default, and every run before the field
            del out["precision"]
        if steps_per_epoch is not None and self.schedule != "constant":
            out["schedule_steps"] = self.epochs * steps_per_epoch
        return out


RECIPES: dict[str, MnistConfig] = {
    "default": MnistConfig(),
    "course": MnistConfig(batch_size=64, optimizer="adam", lr=0.01, schedule="constant",
                          loss="nll", label_smoothing=0.0, val_split=0),
}


def layer_sizes(config: MnistConfig) -> tuple[int, ...]:
    """The MLP's layer sizes, input to output.

    Args:
      config: an ``MnistConfig`` (its ``hidden``).

    Returns:
      tuple of ints ``(784, *hidden, 10)``.

    >>> "-".join(map(str, layer_sizes(MnistConfig())))
    '784-512-256-10'
    """
    return (PIXELS, *config.hidden, CLASSES)


def param_count(config: MnistConfig) -> int:
    """The MLP's number of parameters (weights and biases), from ``config`` alone.

    Args:
      config: an ``MnistConfig`` (its ``hidden``).

    Returns:
      int, what ``nn.count_params(build_model(config))`` gives, without building it.

    >>> param_count(MnistConfig(hidden=(8,)))
    6370
    """
    sizes = layer_sizes(config)
    return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
