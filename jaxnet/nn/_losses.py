"""PyTorch's loss classes (``nn.CrossEntropyLoss()``…): ``jaxnet.losses``, ``reduction`` stored.

Frozen dataclasses: equal settings are equal and hash alike, so a loss object is a
valid static argument of ``jax.jit`` and usable as ``loss_fn`` in ``fit`` and
``make_train_step`` (which call ``loss_fn(outputs, labels, mask=…)``; ``evaluate``
also passes ``reduction="sum"``, which overrides the stored one for that call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

from .. import losses

_REDUCTIONS = ("mean", "sum", "none")


@dataclasses.dataclass(frozen=True)
class _Loss:
    reduction: str = "mean"
    _fn: ClassVar[Callable]

    def __new__(cls, *args, **kwargs):
        # PyTorch spellings that would otherwise fail with a dataclass message about another
        # argument: the class used as the loss (criterion = nn.CrossEntropyLoss, no "()"),
        # and PyTorch's first argument weight= (class weights) given by position or name.
        name = cls.__name__
        if args and not isinstance(args[0], str):
            if len(args) >= 2 or "mask" in kwargs:
                raise TypeError(f"{name}: expected an instance as the loss, got the class "
                                f"called with (outputs, targets); write criterion = "
                                f"nn.{name}() and then criterion(outputs, targets)")
            kwargs = {"weight": args[0], **kwargs}
        torch_only = [k for k in ("weight", "pos_weight", "ignore_index", "size_average",
                                  "reduce") if k in kwargs]
        if torch_only:
            raise TypeError(f"{name}: expected reduction= (and label_smoothing=), got PyTorch's "
                            f"{torch_only[0]}=, which jaxnet does not have; weight or mask the "
                            f"per-example losses: (w * loss(outputs, y, reduction='none')).sum()"
                            f" / w.sum(), or loss(outputs, y, mask=keep)")
        return super().__new__(cls)

    def __post_init__(self):
        if self.reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: expected reduction in {_REDUCTIONS}, "
                             f"got {self.reduction!r}")

    def __call__(self, outputs, targets, *, mask=None, reduction: str | None = None):
        """The loss of ``outputs`` against ``targets`` (see the function it wraps)."""
        reduction = self.reduction if reduction is None else reduction
        return type(self)._fn(outputs, targets, reduction=reduction, mask=mask)


@dataclasses.dataclass(frozen=True)
class CrossEntropyLoss(_Loss):
    """``nn.CrossEntropyLoss(reduction="mean", label_smoothing=0.0)``: ``losses.cross_entropy``.

    Args:
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      label_smoothing: in ``[0, 1]``, as in PyTorch.

    >>> import jax.numpy as jnp
    >>> CrossEntropyLoss()(jnp.array([[2.0, 0.5], [0.1, 1.0]]), jnp.array([0, 1]))
    Array(0.2712..., dtype=float32)
    """

    label_smoothing: float = 0.0

    def __call__(self, outputs, targets, *, mask=None, reduction: str | None = None):
        """The mean (or ``reduction``) cross entropy of logits ``outputs`` and class labels."""
        return losses.cross_entropy(outputs, targets, mask=mask,
                                    reduction=self.reduction if reduction is None else reduction,
                                    label_smoothing=self.label_smoothing)


@dataclasses.dataclass(frozen=True)
class NLLLoss(_Loss):
    """``nn.NLLLoss(reduction="mean")``: ``losses.nll_loss`` on log-probabilities.

    Args:
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    >>> import jax.numpy as jnp
    >>> NLLLoss(reduction="none")(jnp.log(jnp.array([[0.5, 0.5], [0.1, 0.9]])), jnp.array([0, 1]))
    Array([0.6931..., 0.1053...], dtype=float32)
    """

    _fn: ClassVar[Callable] = staticmethod(losses.nll_loss)


@dataclasses.dataclass(frozen=True)
class MSELoss(_Loss):
    """``nn.MSELoss(reduction="mean")``: ``losses.mse_loss``.

    Args:
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    >>> import jax.numpy as jnp
    >>> MSELoss()(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]))
    Array(2.5, dtype=float32)
    """

    _fn: ClassVar[Callable] = staticmethod(losses.mse_loss)


@dataclasses.dataclass(frozen=True)
class BCELoss(_Loss):
    """``nn.BCELoss(reduction="mean")``: ``losses.binary_cross_entropy`` on probabilities.

    Args:
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    >>> import jax.numpy as jnp
    >>> BCELoss()(jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0]))
    Array(0.6931..., dtype=float32)
    """

    _fn: ClassVar[Callable] = staticmethod(losses.binary_cross_entropy)


@dataclasses.dataclass(frozen=True)
class BCEWithLogitsLoss(_Loss):
    """``nn.BCEWithLogitsLoss(reduction="mean")``: ``losses.binary_cross_entropy_with_logits``.

    Args:
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    >>> import jax.numpy as jnp
    >>> BCEWithLogitsLoss()(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]))
    Array(0.6931..., dtype=float32)
    """

    _fn: ClassVar[Callable] = staticmethod(losses.binary_cross_entropy_with_logits)
