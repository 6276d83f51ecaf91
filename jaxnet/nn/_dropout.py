"""``Dropout(p)``: its mode and key come from ``split``'s ``apply(…, train=, rng=)``."""

from __future__ import annotations

from flax import nnx

from ._module import _Described


class Dropout(_Described, nnx.Dropout):
    """``nn.Dropout(p)``: in training, zero each element with probability ``p`` and scale
    the rest by ``1 / (1 - p)``; in evaluation, the identity.

    The mode and the key come from ``split``'s ``apply(…, train=, rng=)``
    (the train step passes ``train=True`` and a fresh key every step;
    ``evaluate`` passes ``train=False``). Called directly, the layer follows
    NNX's ``model.train()``/``model.eval()`` and needs ``rngs`` for training.

    Args:
      p: probability of zeroing an element, in ``[0, 1]``.
      rngs: optional ``nn.Rngs``, only needed to train the layer called directly.

    >>> import jax, jax.numpy as jnp
    >>> from jaxnet.nn import split
    >>> drop = Dropout(0.5)
    >>> apply, params, state = split(drop)
    >>> x = jnp.ones((1, 6))
    >>> apply(params, state, x)[0].tolist()               # eval: identity
    [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    >>> y, _ = apply(params, state, x, train=True, rng=jax.random.key(0))
    >>> sorted(set(y[0].tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """

    def __init__(self, p: float = 0.5, *, rngs: nnx.Rngs | None = None):
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ValueError(f"p: expected a dropout probability in [0, 1], got {p!r}")
        super().__init__(float(p), rngs=rngs)

    @property
    def p(self) -> float:
        return self.rate

    def __call__(self, x, *, deterministic: bool | None = None, rngs=None):
        training = not (self.deterministic if deterministic is None else deterministic)
        if training and self.rate > 0 and rngs is None and self.rngs is None:
            raise ValueError("Dropout: training mode needs a key: train through "
                             "nn.split(model)'s apply(..., train=True, rng=key) (what "
                             "jaxnet.train does), call model.eval() for inference, or build "
                             "the layer with rngs=nn.Rngs(...)")
        return super().__call__(x, deterministic=deterministic, rngs=rngs)

    def describe(self) -> str:
        return f"Dropout(p={self.rate})"
