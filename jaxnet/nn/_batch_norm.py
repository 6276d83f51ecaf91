"""``BatchNorm1d`` with PyTorch's semantics, parameter names and running statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import positive_int
from ._module import _Described
from ._requires_grad import Param


class BatchNorm1d(_Described):
    """``nn.BatchNorm1d(num_features)`` with PyTorch's semantics and parameter names.

    Inputs are ``(N, C)`` or ``(N, C, L)``. In training the batch's mean and
    (biased) variance normalise it and the running statistics move towards
    them: ``running = (1 - momentum) * running + momentum * batch`` (the
    running variance uses the unbiased estimate, as PyTorch). In evaluation the
    running statistics are used and nothing changes. ``weight``/``bias`` are
    parameters; ``running_mean``/``running_var`` are non-parameter state
    (``nnx.BatchStat``), which ``split`` returns as ``state`` and the
    train step carries in ``TrainState.model_state``.

    In training a batch of one value per channel (input ``(1, C)``) is refused,
    as PyTorch does ("Expected more than 1 value per channel when training").

    Note: in a padded last batch (``DataLoader(pad_last=True)``, which ``fit``
    uses) the padding rows count in that batch's statistics; use
    ``drop_last=True`` to match PyTorch exactly there.

    Args:
      num_features: ``C``, the size of the feature axis (axis 1).
      eps: added to the variance for numerical stability.
      momentum: weight of the batch statistics in the running update.
      affine: learn a per-feature ``weight`` and ``bias``, each ``(C,)``.

    The output has the input's shape and dtype.

    >>> import numpy as np
    >>> from jaxnet.nn import split
    >>> bn = BatchNorm1d(3)
    >>> apply, params, state = split(bn)
    >>> y, new = apply(params, state, jnp.arange(6.0).reshape(2, 3), train=True)
    >>> np.round(new["running_mean"], 4).tolist()
    [0.15, 0.25, 0.35]
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True):
        self.num_features = positive_int("num_features", num_features)
        if not isinstance(eps, int | float) or not eps > 0:
            raise ValueError(f"eps: expected a positive number, got {eps!r}")
        if not isinstance(momentum, int | float) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
        self.eps, self.momentum, self.affine = float(eps), float(momentum), bool(affine)
        n = self.num_features
        # Param refuses requires_grad naming jaxnet.optim.freeze (as Linear's do)
        self.weight = Param.named(nnx.Param(jnp.ones(n)), "weight") if affine else nnx.data(None)
        self.bias = Param.named(nnx.Param(jnp.zeros(n)), "bias") if affine else nnx.data(None)
        self.running_mean = nnx.BatchStat(jnp.zeros(n))
        self.running_var = nnx.BatchStat(jnp.ones(n))
        self.use_running_average = False  # NNX's name for eval mode (model.eval() sets it)

    def __call__(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d: expected input (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L), got shape {tuple(x.shape)}")
        axes = (0,) if x.ndim == 2 else (0, 2)
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1)
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            n = x.size // self.num_features  # static under jit: the batch shape is
            if n < 2:  # PyTorch raises too: one value's variance is 0, the output all zeros
                raise ValueError(f"BatchNorm1d: expected more than 1 value per channel when "
                                 f"training, got input shape {tuple(x.shape)}; use a batch "
                                 f"of 2 or more, or evaluate (train=False)")
            mean, var = jnp.mean(x, axes), jnp.var(x, axes)
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            self.running_mean[...] = jax.lax.stop_gradient(
                (1 - m) * self.running_mean[...] + m * mean)
            self.running_var[...] = jax.lax.stop_gradient(
                (1 - m) * self.running_var[...] + m * unbiased)
        y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            y = y * self.weight[...].reshape(shape) + self.bias[...].reshape(shape)
        return y

    def describe(self) -> str:
        return (f"BatchNorm1d({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine})")
