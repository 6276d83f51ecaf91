"""``Linear``, initialised the way PyTorch does (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import positive_int
from ._functional import check_fresh
from ._module import _Described, _require_rngs
from ._requires_grad import Param, handed_out

_CHUNK = 1 << 16


@jax.jit
def _uniform_chunk(key, index, bound):
    u = jax.random.uniform(jax.random.fold_in(key, index), (_CHUNK,), jnp.float32)
    return u * (2 * bound) - bound


def _torch_uniform(fan_in: int):
    """PyTorch's ``nn.Linear`` default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    (``kaiming_uniform(a=sqrt(5))`` for the weight and the bias rule both reduce
    to this bound.) The draws come in fixed-size chunks, ``fold_in(key, i)``,
    from one compiled program: XLA compiles a sampler per shape in ~0.2 s on
    CPU, which made building the MNIST MLP take 1.5 s. Still a pure function
    of the key, and traceable (``nnx.eval_shape``, building inside ``jit``).
    """
    bound = np.float32(1.0 / math.sqrt(fan_in))

    def init(key, shape, dtype=jnp.float32):
        n = math.prod(shape)
        chunks = [_uniform_chunk(key, i, bound) for i in range(-(-n // _CHUNK))]
        if isinstance(key, jax.core.Tracer):
            return jnp.concatenate(chunks)[:n].reshape(shape).astype(dtype)
        return jnp.asarray(np.concatenate([np.asarray(c) for c in chunks])[:n]
                           .reshape(shape).astype(dtype))

    return init


class Linear(_Described, nnx.Linear):
    """``nn.Linear(in_features, out_features)``, initialised the way PyTorch does.

    ``y = x @ kernel + bias`` with ``kernel`` of shape ``(in_features,
    out_features)`` (JAX's layout). ``weight`` is PyTorch's view of the same
    values, ``(out_features, in_features)``, read-only.

    Args:
      in_features: size of each input sample.
      out_features: size of each output sample.
      bias: whether to learn an additive bias.
      rngs: the model's ``nn.Rngs`` (required: see the module docstring).

    >>> from jaxnet.nn import Rngs
    >>> layer = Linear(3, 2, rngs=Rngs(0))
    >>> layer(jnp.ones((5, 3))).shape
    (5, 2)
    >>> layer.weight.shape, layer.kernel.shape
    ((2, 3), (3, 2))
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rngs: nnx.Rngs | None = None):
        in_features = positive_int("in_features", in_features)
        out_features = positive_int("out_features", out_features)
        init = _torch_uniform(in_features)
        super().__init__(in_features, out_features, use_bias=bool(bias), kernel_init=init,
                         bias_init=init, rngs=_require_rngs(rngs, "Linear"))
        # Param refuses requires_grad naming jaxnet.optim.freeze (nnx.Param's message would
        # advise set_metadata, which freezes nothing); same values, metadata and filters.
        self.kernel = Param.named(self.kernel, "kernel")
        if self.bias is not None:
            self.bias = Param.named(self.bias, "bias")

    def __call__(self, x, **kwargs):
        # PyTorch raises on an integer @ float matmul; JAX would promote silently, so a
        # forgotten pixel normalisation (0..255) would train on. The dtype is static under
        # jit: the check runs once, at tracing, and costs nothing in the compiled step.
        dtype = getattr(x, "dtype", None)
        if dtype is not None and not jnp.issubdtype(dtype, jnp.inexact):
            fix = ("convert pixels to float first: datasets.to_float(images) (PyTorch's "
                   "ToTensor)" if dtype == jnp.uint8 else "convert it first: x.astype(jnp.float32)")
            raise TypeError(f"Linear: input x has dtype {dtype}; {fix}")
        shape = tuple(getattr(x, "shape", ()))
        if not shape or shape[-1] != self.in_features:  # static: PyTorch's message, not XLA's
            raise ValueError(f"Linear: expected input (..., {self.in_features}) (in_features="
                             f"{self.in_features}), got shape {shape}; flatten images first "
                             f"(x.reshape(len(x), -1)) or build Linear({shape[-1] if shape else 1},"
                             f" {self.out_features})")
        return super().__call__(x, **kwargs)

    @property
    def weight(self) -> jax.Array:
        """The weights in PyTorch's ``(out_features, in_features)`` layout (a copy).

        A copy: changing it changes nothing, and ``weight.requires_grad = False``
        is refused at the next ``nn.split`` (freeze with ``jaxnet.optim.freeze``).
        """
        check_fresh(self, "weight")  # after a step loop: the trained values are in the state
        return handed_out(self, self.kernel[...].T)

    def describe(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None})")
