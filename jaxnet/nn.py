"""Models the way the PyTorch course writes them, on Flax NNX; training sees pure functions.

A model is a ``jaxnet.nn.Module`` (Flax NNX's ``nnx.Module``) built from layer
objects with PyTorch's names — ``Linear``, ``ReLU()``, ``Dropout(p)``,
``BatchNorm1d``, ``Sequential`` — in ``__init__(…, rngs)`` and used in
``__call__`` (PyTorch's ``forward``)::

    class NeuralNetwork(nn.Module):
        def __init__(self, num_inputs, num_outputs, *, rngs):
            self.layers = nn.Sequential(
                nn.Linear(num_inputs, 30, rngs=rngs), nn.ReLU(),
                nn.Linear(30, 20, rngs=rngs), nn.ReLU(),
                nn.Linear(20, num_outputs, rngs=rngs))

        def __call__(self, x):
            return self.layers(x)

    model = NeuralNetwork(50, 3, rngs=nn.Rngs(0))

Randomness is explicit: every layer with random initial values takes
``rngs``, an ``nn.Rngs`` shared by the whole model so that each layer draws
its own key (there is no global seed, and no two layers share a key unless you
give them two equal ``Rngs``).

Training uses ``functional(model)``: a pure ``apply(params, state, x, *,
train=False, rng=None) -> (outputs, state)`` plus the parameters and the
non-parameter state (BatchNorm's running statistics). The mode
(``model.train()``/``model.eval()`` in PyTorch) and the dropout key are
arguments of that function, not flags stored in the model.

>>> model = MLP(784, [512, 256], 10, rngs=0)
>>> count_params(model)
535818
>>> apply, params, state = functional(model)
>>> logits, state = apply(params, state, jnp.zeros((2, 784)))
>>> logits.shape
(2, 10)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from collections.abc import Sequence as SequenceABC
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._checks import positive_int

__all__ = [
    "MLP",
    "BatchNorm1d",
    "Dropout",
    "Flatten",
    "Functional",
    "GELU",
    "Identity",
    "Linear",
    "LogSoftmax",
    "Module",
    "ReLU",
    "Rngs",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "count_params",
    "functional",
    "load_state_dict",
    "state_dict",
    "summary",
]

def _children(module: nnx.Module) -> list[tuple[str, Any]]:
    """A module's direct sub-layers with PyTorch's names, in the order they were assigned."""
    if isinstance(module, nnx.Sequential):
        return [(str(i), layer) for i, layer in enumerate(module.layers)]
    if isinstance(module, nnx.List):
        return [(str(i), layer) for i, layer in enumerate(module)]
    return [(name, value) for name, value in vars(module).items()
            if isinstance(value, nnx.Module) and not name.startswith("_")]


def _torch_repr(module: Any) -> str:
    """``print(model)`` as PyTorch prints it: nested ``(name): Layer(...)`` lines."""
    if not isinstance(module, nnx.Module):
        return getattr(module, "__name__", type(module).__name__)
    if isinstance(module, _Described):
        return module.describe()
    children = _children(module)
    if not children:
        return f"{type(module).__name__}()"
    lines = [f"{type(module).__name__}("]
    for name, child in children:
        lines.append(f"  ({name}): " + _torch_repr(child).replace("\n", "\n  "))
    return "\n".join([*lines, ")"])


class Module(nnx.Module):
    """Base class of models and layers (``torch.nn.Module``): a Flax NNX ``nnx.Module``.

    Subclass it, create layers in ``__init__(…, rngs)`` and compute in
    ``__call__`` (PyTorch's ``forward``). ``print(model)`` shows the nested
    layers the way PyTorch does.

    >>> class TwoLayer(Module):
    ...     def __init__(self, *, rngs):
    ...         self.hidden = Linear(2, 3, rngs=rngs)
    ...         self.out = Linear(3, 1, rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.out(jax.nn.relu(self.hidden(x)))
    >>> model = TwoLayer(rngs=Rngs(0))
    >>> print(model)
    TwoLayer(
      (hidden): Linear(in_features=2, out_features=3, bias=True)
      (out): Linear(in_features=3, out_features=1, bias=True)
    )
    >>> model(jnp.ones((4, 2))).shape
    (4, 1)
    """

    def __repr__(self) -> str:
        return _torch_repr(self)

    __str__ = __repr__


class _Described(Module):
    """A layer that prints as one line, e.g. ``Linear(in_features=2, out_features=3)``."""

    def describe(self) -> str:
        return f"{type(self).__name__}()"

    def __repr__(self) -> str:
        return self.describe()

    __str__ = __repr__

Rngs = nnx.Rngs
"""``nnx.Rngs``: the explicit source of initial random values, e.g. ``nn.Rngs(0)``."""


def _require_rngs(rngs: Any, layer: str) -> nnx.Rngs:
    """Layers take an ``Rngs`` shared by the model, never a bare seed (which two layers
    would then share)."""
    if isinstance(rngs, nnx.Rngs):
        return rngs
    if rngs is None:
        raise TypeError(f"{layer}: rngs is required: pass rngs=nn.Rngs(0) (one Rngs shared by "
                        f"all layers of a model, so each layer draws its own key)")
    raise TypeError(f"{layer}: rngs: expected an nn.Rngs such as nn.Rngs(0), shared by all "
                    f"layers of a model, got {type(rngs).__name__} {rngs!r}")


def _model_rngs(rngs: Any) -> nnx.Rngs:
    """A whole model (``MLP``) may take an int seed: it makes one ``Rngs`` for all layers."""
    if isinstance(rngs, int | np.integer) and not isinstance(rngs, bool):
        return nnx.Rngs(int(rngs))
    return _require_rngs(rngs, "MLP")


# ---------------------------------------------------------------------------- layers

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

    @property
    def weight(self) -> jax.Array:
        """The weights in PyTorch's ``(out_features, in_features)`` layout (a copy)."""
        return self.kernel[...].T

    def describe(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None})")


class _Stateless(_Described):
    """A layer without parameters: a named function of its input."""


class Identity(_Stateless):
    """Returns its input (``nn.Identity``).

    >>> Identity()(jnp.array([1.0, -2.0])).tolist()
    [1.0, -2.0]
    """

    def __call__(self, x):
        return x


class ReLU(_Stateless):
    """``max(x, 0)`` elementwise (``nn.ReLU``): any shape, same shape and dtype out.

    >>> ReLU()(jnp.array([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 2.0]
    """

    def __call__(self, x):
        return jax.nn.relu(x)


class Sigmoid(_Stateless):
    """``1 / (1 + exp(-x))`` elementwise (``nn.Sigmoid``): any shape, same shape out.

    >>> Sigmoid()(jnp.array([0.0])).tolist()
    [0.5]
    """

    def __call__(self, x):
        return jax.nn.sigmoid(x)


class Tanh(_Stateless):
    """``tanh(x)`` elementwise (``nn.Tanh``): any shape, same shape out.

    >>> Tanh()(jnp.array([0.0, 1.0])).round(4).tolist()
    [0.0, 0.7616]
    """

    def __call__(self, x):
        return jnp.tanh(x)


class GELU(_Stateless):
    """The exact (erf) GELU, as PyTorch's default ``nn.GELU()``: any shape, same shape out.

    >>> GELU()(jnp.array([-1.0, 0.0, 1.0])).round(4).tolist()
    [-0.1587, 0.0, 0.8413]
    """

    def __call__(self, x):
        return jax.nn.gelu(x, approximate=False)


class Softmax(_Described):
    """``nn.Softmax(dim)``: probabilities along ``dim`` (default the last axis).

    Args:
      dim: the axis that sums to 1; the output has the input's shape.

    >>> Softmax(dim=1)(jnp.zeros((1, 4)))
    Array([[0.25, 0.25, 0.25, 0.25]], dtype=float32)
    """

    def __init__(self, dim: int = -1):
        self.dim = int(dim)

    def __call__(self, x):
        return jax.nn.softmax(x, axis=self.dim)

    def describe(self) -> str:
        return f"Softmax(dim={self.dim})"


class LogSoftmax(_Described):
    """``nn.LogSoftmax(dim)``: log-probabilities along ``dim``, for ``losses.nll_loss``.

    Args:
      dim: the axis normalised over; the output has the input's shape.

    >>> LogSoftmax()(jnp.log(jnp.array([[1.0, 3.0]]))).round(4).tolist()
    [[-1.3863, -0.2877]]
    """

    def __init__(self, dim: int = -1):
        self.dim = int(dim)

    def __call__(self, x):
        return jax.nn.log_softmax(x, axis=self.dim)

    def describe(self) -> str:
        return f"LogSoftmax(dim={self.dim})"


class Flatten(_Described):
    """``nn.Flatten(start_dim=1, end_dim=-1)``: e.g. ``(N, 28, 28) -> (N, 784)``.

    Args:
      start_dim: first axis merged into one.
      end_dim: last axis merged (inclusive; negative counts from the end).

    >>> Flatten()(jnp.zeros((2, 28, 28))).shape
    (2, 784)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def __call__(self, x):
        start = self.start_dim % x.ndim
        end = self.end_dim % x.ndim
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])

    def describe(self) -> str:
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"


class Dropout(_Described, nnx.Dropout):
    """``nn.Dropout(p)``: in training, zero each element with probability ``p`` and scale
    the rest by ``1 / (1 - p)``; in evaluation, the identity.

    The mode and the key come from ``functional``'s ``apply(…, train=, rng=)``
    (the train step passes ``train=True`` and a fresh key every step;
    ``evaluate`` passes ``train=False``). Called directly, the layer follows
    NNX's ``model.train()``/``model.eval()`` and needs ``rngs`` for training.

    Args:
      p: probability of zeroing an element, in ``[0, 1]``.
      rngs: optional ``nn.Rngs``, only needed to train the layer called directly.

    >>> drop = Dropout(0.5)
    >>> apply, params, state = functional(drop)
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
                             "functional(model)'s apply(..., train=True, rng=key) (what "
                             "jaxnet.train does), call model.eval() for inference, or build "
                             "the layer with rngs=nn.Rngs(...)")
        return super().__call__(x, deterministic=deterministic, rngs=rngs)

    def describe(self) -> str:
        return f"Dropout(p={self.rate})"


class BatchNorm1d(_Described):
    """``nn.BatchNorm1d(num_features)`` with PyTorch's semantics and parameter names.

    Inputs are ``(N, C)`` or ``(N, C, L)``. In training the batch's mean and
    (biased) variance normalise it and the running statistics move towards
    them: ``running = (1 - momentum) * running + momentum * batch`` (the
    running variance uses the unbiased estimate, as PyTorch). In evaluation the
    running statistics are used and nothing changes. ``weight``/``bias`` are
    parameters; ``running_mean``/``running_var`` are non-parameter state
    (``nnx.BatchStat``), which ``functional`` returns as ``state`` and the
    train step carries in ``TrainState.model_state``.

    Note: in a padded last batch (``DataLoader(pad_last=True)``, which ``fit``
    uses) the padding rows count in that batch's statistics; use
    ``drop_last=True`` to match PyTorch exactly there.

    Args:
      num_features: ``C``, the size of the feature axis (axis 1).
      eps: added to the variance for numerical stability.
      momentum: weight of the batch statistics in the running update.
      affine: learn a per-feature ``weight`` and ``bias``, each ``(C,)``.

    The output has the input's shape and dtype.

    >>> bn = BatchNorm1d(3)
    >>> apply, params, state = functional(bn)
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
        self.weight = nnx.Param(jnp.ones(n)) if affine else nnx.data(None)
        self.bias = nnx.Param(jnp.zeros(n)) if affine else nnx.data(None)
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
            mean, var = jnp.mean(x, axes), jnp.var(x, axes)
            n = x.size // self.num_features
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


class Sequential(Module, nnx.Sequential):
    """``nn.Sequential(*layers)``: calls its layers in order; indexable like a list.

    Args:
      *layers: modules (or callables) applied in order; each one's output is
        the next one's input.

    >>> model = Sequential(Linear(4, 3, rngs=Rngs(0)), ReLU(), Linear(3, 1, rngs=Rngs(1)))
    >>> len(model), model[0].weight.shape, type(model[1]).__name__
    (3, (3, 4), 'ReLU')
    """

    def __getitem__(self, index: int):
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)


_ACTIVATION_LAYERS: dict[str, Callable[[], nnx.Module]] = {
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gelu": GELU,
    "identity": Identity,
    "log_softmax": LogSoftmax,
}


def _activation_layer(name: str, argument: str) -> nnx.Module:
    if name not in _ACTIVATION_LAYERS:
        raise ValueError(f"{argument}: expected one of {sorted(_ACTIVATION_LAYERS)}, "
                         f"got {name!r}")
    return _ACTIVATION_LAYERS[name]()


class MLP(Sequential):
    """A multilayer perceptron: ``Linear → ReLU [→ Dropout] → … → Linear``.

    A ``Sequential`` of ``Linear`` and activation layers (``layers[0]`` is the
    first ``Linear``), returning logits by default.

    Args:
      in_features: input size, e.g. 784 for flattened MNIST.
      hidden: sizes of the hidden layers, e.g. ``[512, 256]`` (may be empty).
      out_features: output size (number of classes for a classifier).
      activation: hidden activation: ``"relu"``, ``"sigmoid"``, ``"tanh"``, ``"gelu"``.
      output_activation: ``"identity"`` (logits, for ``losses.cross_entropy``) or
        ``"log_softmax"`` (for ``losses.nll_loss``, like the course).
      dropout: if > 0, a ``Dropout(dropout)`` after every hidden activation.
      rngs: an ``nn.Rngs`` or an int seed for the whole model.

    >>> model = MLP(2, [30, 20], 2, rngs=0)
    >>> count_params(model), model(jnp.ones((4, 2))).shape
    (752, (4, 2))
    """

    def __init__(self, in_features: int, hidden: SequenceABC[int], out_features: int, *,
                 activation: str = "relu", output_activation: str = "identity",
                 dropout: float = 0.0, rngs: nnx.Rngs | int | None = None):
        if isinstance(hidden, int | str) or not isinstance(hidden, SequenceABC):
            raise TypeError(f"hidden: expected a sequence of ints such as [512, 256], "
                            f"got {hidden!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) \
                or not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        _activation_layer(activation, "activation")
        _activation_layer(output_activation, "output_activation")
        rngs = _model_rngs(rngs)
        sizes = [positive_int("in_features", in_features),
                 *(positive_int(f"hidden[{i}]", h) for i, h in enumerate(hidden)),
                 positive_int("out_features", out_features)]
        layers: list[nnx.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(Linear(sizes[i], sizes[i + 1], rngs=rngs))
            if i < len(sizes) - 2:
                layers.append(_activation_layer(activation, "activation"))
                if dropout:
                    layers.append(Dropout(dropout))
        if output_activation != "identity":
            layers.append(_activation_layer(output_activation, "output_activation"))
        super().__init__(*layers)


# ---------------------------------------------------------------------------- pure view

class Functional(NamedTuple):
    """What ``functional(model)`` returns: unpack as ``apply, params, state = ...``.

    >>> f = functional(Linear(2, 1, rngs=Rngs(0)))
    >>> f.apply(f.params, f.state, jnp.ones((3, 2)))[0].shape, sorted(f.params), f.state
    ((3, 1), ['bias', 'kernel'], {})
    """

    apply: Callable[..., tuple[Any, Any]]
    """``apply(params, state, x, *, train=False, rng=None) -> (outputs, new_state)``."""
    params: dict
    """Trainable parameters, a nested dict of arrays (what ``jax.grad`` and optax see)."""
    state: dict
    """Non-parameter state (BatchNorm running statistics); ``{}`` for most models."""


_RNG = nnx.RngState
_STATE = nnx.Not(nnx.Any(nnx.Param, nnx.RngState))


def _set_mode(model: nnx.Module, train: bool, rng) -> None:
    """``model.train()`` / ``model.eval()`` on a merged copy, and a key per dropout layer."""
    model.set_attributes(deterministic=not train, use_running_average=not train,
                         raise_if_not_found=False)
    if not train:
        return
    for i, (_, module) in enumerate(nnx.iter_modules(model)):
        if isinstance(module, nnx.Dropout) and module.rate > 0:
            if rng is None:
                raise ValueError("rng: the model has Dropout, so apply(..., train=True) needs "
                                 "rng=a jax.random key (the train step passes one per step)")
            module.rngs = nnx.Rngs(dropout=jax.random.fold_in(rng, i)).dropout


def _split(model: nnx.Module):
    """``(merge, params, state)``: ``merge(params, state)`` rebuilds a fresh copy of ``model``."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected an nn.Module (Flax NNX), got {type(model).__name__}")
    if not any("__call__" in vars(cls) for cls in type(model).__mro__[:-1]):
        extra = " (rename forward to __call__)" if hasattr(model, "forward") else ""
        raise TypeError(f"model: {type(model).__name__} defines no __call__(self, x), the "
                        f"method that computes the output (PyTorch's forward){extra}")
    graphdef, params, rng_state, state = nnx.split(model, nnx.Param, _RNG, ...)

    def merge(params, state):
        return nnx.merge(graphdef, params, rng_state, state)

    return merge, nnx.to_pure_dict(params), nnx.to_pure_dict(state)


def functional(model: nnx.Module) -> Functional:
    """Split a model into a pure function, its parameters and its non-parameter state.

    ``apply(params, state, x, *, train=False, rng=None)`` rebuilds the model
    from its arguments inside the function, so it can be jitted and
    differentiated. ``train=True`` is PyTorch's ``model.train()`` (Dropout
    active with keys derived from ``rng``; BatchNorm uses batch statistics and
    returns updated running statistics); ``train=False`` is ``model.eval()``.
    It returns ``(outputs, new_state)``; ``new_state is state`` in
    evaluation. The model object itself is not changed.

    Args:
      model: an ``nn.Module`` (Flax NNX module) that defines ``__call__``.

    Returns:
      ``Functional(apply, params, state)``: ``params`` and ``state`` are plain
      nested dicts of arrays (together, PyTorch's ``state_dict``).

    >>> apply, params, state = functional(MLP(2, [3], 1, rngs=0))
    >>> sorted(params["layers"]), state
    ([0, 2], {})
    >>> apply(params, state, jnp.ones((4, 2)))[0].shape
    (4, 1)
    """
    merge, params, state = _split(model)

    def apply(params, state, x, *, train: bool = False, rng=None):
        module = merge(params, state)
        _set_mode(module, train, rng)
        out = module(x)
        if not train:
            return out, state
        return out, nnx.to_pure_dict(nnx.state(module, _STATE))

    return Functional(apply, params, state)


def state_dict(model: nnx.Module) -> dict:
    """Parameters and buffers (BatchNorm statistics) as one nested dict (``model.state_dict()``).

    Args:
      model: an ``nn.Module``.

    Returns:
      A nested dict (sub-module names, then list indices for ``Sequential``)
      of arrays; the model's RNG state is left out.

    >>> sorted(state_dict(Sequential(Linear(2, 2, rngs=Rngs(0)), BatchNorm1d(2)))["layers"][1])
    ['bias', 'running_mean', 'running_var', 'weight']
    """
    return nnx.to_pure_dict(nnx.state(model, nnx.Not(_RNG)))


def load_state_dict(model: nnx.Module, values: dict) -> None:
    """Copy ``values`` (from ``state_dict``) into ``model`` in place (``load_state_dict``).

    Args:
      model: the ``nn.Module`` to update.
      values: a nested dict of arrays with exactly the structure and shapes of
        ``state_dict(model)``.

    Returns:
      ``None``; ``model`` holds the new values.

    Raises:
      ValueError: naming the missing/unexpected paths, or the first path
        whose shape differs, with both shapes.

    >>> a, b = Linear(2, 1, rngs=Rngs(0)), Linear(2, 1, rngs=Rngs(1))
    >>> load_state_dict(b, state_dict(a))
    >>> bool(jnp.array_equal(a.kernel[...], b.kernel[...]))
    True
    """
    current = nnx.state(model, nnx.Not(_RNG))
    want = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(current))[0]
    got_leaves, _ = jax.tree_util.tree_flatten_with_path(values)
    want_paths = [jax.tree_util.keystr(p) for p, _ in want]
    got_paths = [jax.tree_util.keystr(p) for p, _ in got_leaves]
    if want_paths != got_paths:
        missing = sorted(set(want_paths) - set(got_paths))
        extra = sorted(set(got_paths) - set(want_paths))
        raise ValueError(f"state_dict: structure differs from the model's; missing {missing}, "
                         f"unexpected {extra}")
    for (path, w), (_, g) in zip(want, got_leaves, strict=True):
        if jnp.shape(w) != jnp.shape(g):
            raise ValueError(f"state_dict{jax.tree_util.keystr(path)}: expected shape "
                             f"{jnp.shape(w)}, got {jnp.shape(g)}")
    nnx.replace_by_pure_dict(current, values)
    nnx.update(model, current)


def count_params(model_or_params: Any) -> int:
    """Number of trainable parameters of a module, or of a params pytree.

    Args:
      model_or_params: an ``nn.Module`` (its ``nnx.Param`` leaves are counted)
        or any pytree of arrays, e.g. ``params`` from ``functional``.

    Returns:
      The total number of elements, a Python ``int``.

    >>> count_params({"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)})
    8
    >>> count_params(MLP(50, [30, 20], 3, rngs=123))
    2213
    """
    tree = model_or_params
    if isinstance(tree, nnx.Module):
        tree = nnx.state(tree, nnx.Param)
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


# ---------------------------------------------------------------------------- summary

def _describe(module: nnx.Module) -> str:
    if isinstance(module, nnx.Linear):
        return f"Linear({module.in_features}, {module.out_features})"
    if isinstance(module, BatchNorm1d):
        return f"BatchNorm1d({module.num_features})"
    if isinstance(module, Dropout | Softmax | LogSoftmax):
        return repr(module)
    return type(module).__name__


def _shapes(out: Any) -> str:
    shapes = [tuple(x.shape) for x in jax.tree.leaves(out) if hasattr(x, "shape")]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _record_calls(modules: list[nnx.Module], shapes: dict[int, str]):
    """Wrap the ``__call__`` of the modules' classes so each records its first output shape.

    ``shapes`` fills in call order (dicts keep insertion order). The same
    technique as ``nnx.tabulate``; the returned function restores the classes.
    """
    targets = {id(m) for m in modules}
    patched = []
    for cls in {type(m) for m in modules}:
        if not any("__call__" in vars(base) for base in cls.__mro__[:-1]):
            continue  # containers such as nnx.List are not called
        original = cls.__call__
        had_own = "__call__" in cls.__dict__

        def wrapper(self, *args, __original=original, **kwargs):
            first = id(self) in targets and id(self) not in shapes
            if first:
                shapes[id(self)] = "--"  # reserve the slot: parents are called first
            out = __original(self, *args, **kwargs)
            if first:
                shapes[id(self)] = _shapes(out)
            return out

        cls.__call__ = wrapper
        patched.append((cls, original, had_own))

    def restore():
        for cls, original, had_own in patched:
            if had_own:
                cls.__call__ = original
            else:
                del cls.__call__

    return restore


def _record_function(fn: Callable, key: tuple, shapes: dict) -> Callable:
    """``fn`` that also records its first output shape in ``shapes[key]`` (call order)."""
    def recorded(*args, **kwargs):
        out = fn(*args, **kwargs)
        shapes.setdefault(key, _shapes(out))
        return out

    return recorded


def _sort_key(path: tuple) -> list:
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path]


def summary(model: nnx.Module, input_shape: SequenceABC[int], *, dtype=jnp.float32,
            print_fn: Callable[[str], Any] | None = print) -> str:
    """Print and return a table of every layer: name, type, output shape, parameters.

    Like ``print(model)`` plus torchinfo's ``summary``: nested modules are
    indented under their parent, with PyTorch-style names (``layers.0``).
    Shapes are computed abstractly in evaluation mode (nothing runs, nothing
    changes). ``input_shape`` includes the batch dimension. ``Params`` counts a
    layer's own parameters (``--``: none; a container's are in its children's rows).
    A plain function in a ``Sequential`` (``jax.nn.relu``) is a row named by its
    index and typed by its name, as ``print(model)`` shows it.

    Args:
      model: an ``nn.Module``.
      input_shape: the input's shape, batch dimension included, e.g. ``(64, 784)``.
      dtype: the input's dtype.
      print_fn: called with the table; ``None`` to only return it.

    Returns:
      The table as one string (lines separated by ``\\n``).

    >>> text = summary(MLP(784, [512, 256], 10, rngs=0), (64, 784), print_fn=None)
    >>> print(text.splitlines()[5])
      0        Linear(784, 512)  (64, 512)   401,920
    >>> print(text.splitlines()[-2])
    Total params: 535,818
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if isinstance(input_shape, str | bytes) or not isinstance(input_shape, SequenceABC):
        raise TypeError(f"input_shape: expected a tuple of ints with the batch dimension, e.g. "
                        f"(64, 784), got {input_shape!r}")
    input_shape = tuple(positive_int("input_shape", d) for d in input_shape)
    merge, params, state = _split(model)
    modules = dict(nnx.iter_modules(model))
    # Sequential keeps its layers in an nnx.List: PyTorch names them "layers.0", not
    # "layers.layers.0", so that list is neither a row nor a part of the names.
    hidden = {p for p, m in modules.items() if p and p[-1] == "layers"
              and isinstance(m, nnx.List) and isinstance(modules.get(p[:-1]), nnx.Sequential)}
    # Plain functions in a Sequential: path -> the name print(model) shows.
    functions = {p + ("layers", i): getattr(f, "__name__", type(f).__name__)
                 for p, m in modules.items() if isinstance(m, nnx.Sequential)
                 for i, f in enumerate(m.layers) if not isinstance(f, nnx.Module)}
    shapes: dict[Any, str] = {}
    rows_by_path: dict[tuple, Any] = {}

    def traced(params, state, x):
        module = merge(params, state)
        _set_mode(module, False, None)
        found = [(p, m) for p, m in nnx.iter_modules(module) if p not in hidden]
        rows_by_path.update((p, id(m)) for p, m in found)
        rows_by_path.update((p, p) for p in functions)  # a function's key: its path
        by_path = dict(found)
        for path in functions:
            layers = by_path[path[:-2]].layers
            layers[path[-1]] = _record_function(layers[path[-1]], path, shapes)
        restore = _record_calls([m for _, m in found], shapes)
        try:
            return module(x)
        finally:
            restore()

    try:
        jax.eval_shape(traced, params, state, jax.ShapeDtypeStruct(input_shape, dtype))
    except TypeError as error:  # shapes that do not fit the layers
        raise ValueError(f"input_shape: {type(model).__name__} cannot take an input of shape "
                         f"{input_shape}: {str(error).splitlines()[0]}") from error

    own: dict[tuple, int] = {}
    module_paths = set(rows_by_path)
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        owner = max((p for p in module_paths if path[:len(p)] == p), key=len)
        own[owner] = own.get(owner, 0) + int(np.size(leaf))

    # Siblings in the order they were first called (PyTorch/torchinfo order), then by name.
    called = {ident: i for i, ident in enumerate(shapes)}

    def order(path: tuple) -> list:
        return [(called.get(rows_by_path.get(path[:i + 1]), len(called)), _sort_key((e,)))
                for i, e in enumerate(path)]

    rows = []
    for path in sorted(rows_by_path, key=order):
        depth = sum(1 for p in module_paths if p != path and path[:len(p)] == p)
        name = ".".join(str(e) for i, e in enumerate(path) if path[:i + 1] not in hidden)
        name = name or type(model).__name__
        n = own.get(path, 0)
        count = f"{n:,}" if n else "--"
        kind = functions[path] if path in functions else _describe(modules[path])
        rows.append(("  " * depth + name, kind, shapes.get(rows_by_path[path], "--"), count))
    header = ("Layer", "Type", "Output shape", "Params")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(4)]
    w0, w1, w2, w3 = widths
    fmt = f"{{:<{w0}}}  {{:<{w1}}}  {{:<{w2}}}  {{:>{w3}}}"
    rule = "-" * (sum(widths) + 6)
    n_state = int(sum(np.size(x) for x in jax.tree.leaves(state)))
    lines = [f"{type(model).__name__} (input {tuple(input_shape)})", rule, fmt.format(*header),
             rule, *(fmt.format(*r).rstrip() for r in rows), rule,
             f"Total params: {count_params(model):,}",
             f"Non-trainable state: {n_state:,}"]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
