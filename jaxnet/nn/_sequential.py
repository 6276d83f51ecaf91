"""``Sequential`` (PyTorch's ``nn.Sequential``) and the ``MLP`` built from it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from typing import Any

from flax import nnx

from .._checks import positive_int
from ._activations import GELU, Identity, LogSoftmax, ReLU, Sigmoid, Tanh
from ._dropout import Dropout
from ._linear import Linear
from ._module import Module, _model_rngs


class Sequential(Module, nnx.Sequential):
    """``nn.Sequential(*layers)``: calls its layers in order; indexable like a list.

    Args:
      *layers: modules (or callables) applied in order; each one's output is
        the next one's input.

    >>> from jaxnet.nn import Rngs
    >>> model = Sequential(Linear(4, 3, rngs=Rngs(0)), ReLU(), Linear(3, 1, rngs=Rngs(1)))
    >>> len(model), model[0].weight.shape, type(model[1]).__name__
    (3, (3, 4), 'ReLU')
    """

    def __init__(self, *layers: Any):
        for i, layer in enumerate(layers):
            if isinstance(layer, type):  # nn.ReLU for nn.ReLU(): would fail at the first call
                raise TypeError(f"Sequential: expected layer objects, got the class "
                                f"{layer.__name__} at position {i}; write {layer.__name__}()")
            if isinstance(layer, Mapping):  # PyTorch's Sequential(OrderedDict(...))
                raise TypeError("Sequential: expected layers as arguments, got a dict of "
                                "named layers (PyTorch's OrderedDict form); write "
                                "Sequential(*layers.values()), or a Module with one "
                                "attribute per name for PyTorch's state dict keys")
        super().__init__(*layers)

    def __getitem__(self, index: int):
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)

    def append(self, layer: Any):
        """Refused: a model is built once; make a new ``Sequential`` with the extra layer."""
        raise TypeError(f"Sequential.append(): jaxnet builds a model once (nn.split reads its "
                        f"layers), got {type(layer).__name__} to add; build it with the new "
                        f"layer: nn.Sequential(*layers, new) (or nn.Sequential(*model, new))")


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

    >>> import jax.numpy as jnp
    >>> from jaxnet.nn import count_params
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
