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

Training uses ``split(model)``: a pure ``apply(params, state, x, *,
train=False, rng=None) -> (outputs, state)`` plus the parameters and the
non-parameter state (BatchNorm's running statistics). The mode
(``model.train()``/``model.eval()`` in PyTorch) and the dropout key are
arguments of that function, not flags stored in the model.

Contract: building a model is a pure function of its ``Rngs``; ``split``
never changes the model object; ``print(model)`` and ``summary`` name layers as
PyTorch does.

What it offers: the layers ``Linear``, ``ReLU``, ``Sigmoid``, ``Tanh``,
``GELU``, ``Softmax``, ``LogSoftmax``, ``Flatten``, ``Identity``, ``Dropout``
and ``BatchNorm1d``; the containers ``Sequential`` and ``MLP``; the losses as
layers (``CrossEntropyLoss``, ``NLLLoss``, ``MSELoss``, ``BCELoss``,
``BCEWithLogitsLoss``); the model tools ``split``, ``Functional``,
``state_dict``, ``load_state_dict``, ``count_params`` and ``summary``; and
``functional``, PyTorch's ``F`` (``import jaxnet.nn.functional as F``).
PyTorch habits such as ``model.parameters()``, ``model.to(device)`` or
``model.state_dict()`` either work or name the jaxnet way.

>>> import jax.numpy as jnp
>>> model = MLP(784, [512, 256], 10, rngs=0)
>>> count_params(model)
535818
>>> apply, params, state = split(model)
>>> logits, state = apply(params, state, jnp.zeros((2, 784)))
>>> logits.shape
(2, 10)
"""

# For developers, where things live:
# Files: ``_module`` (``Module``, ``Rngs``, the PyTorch-style print) · ``_linear``
# (``Linear``, PyTorch's init) · ``_activations`` (``Identity``, ``ReLU``,
# ``Sigmoid``, ``Tanh``, ``GELU``, ``Softmax``, ``LogSoftmax``, ``Flatten``) ·
# ``_dropout`` · ``_batch_norm`` · ``_sequential`` (``Sequential``, ``MLP``) ·
# ``_functional`` (``Functional``, ``split``, ``state_dict``,
# ``load_state_dict``, ``count_params``) · ``_summary`` · ``_losses``
# (``CrossEntropyLoss``, ``NLLLoss``, ``MSELoss``, ``BCELoss``,
# ``BCEWithLogitsLoss``) · ``_habits`` (PyTorch's ``model.parameters()``,
# ``to()``, ``state_dict()``…: work or name the jaxnet way) · ``_requires_grad``
# · ``functional`` (PyTorch's ``F``: ``import jaxnet.nn.functional as F``).

from . import functional as functional
from ._activations import GELU as GELU
from ._activations import Flatten as Flatten
from ._activations import Identity as Identity
from ._activations import LogSoftmax as LogSoftmax
from ._activations import ReLU as ReLU
from ._activations import Sigmoid as Sigmoid
from ._activations import Softmax as Softmax
from ._activations import Tanh as Tanh
from ._batch_norm import BatchNorm1d as BatchNorm1d
from ._dropout import Dropout as Dropout
from ._functional import Functional as Functional
from ._functional import StaleModelError as StaleModelError
from ._functional import count_params as count_params
from ._functional import load_state_dict as load_state_dict
from ._functional import split as split
from ._functional import state_dict as state_dict
from ._functional import update as update
from ._linear import Linear as Linear
from ._losses import BCELoss as BCELoss
from ._losses import BCEWithLogitsLoss as BCEWithLogitsLoss
from ._losses import CrossEntropyLoss as CrossEntropyLoss
from ._losses import MSELoss as MSELoss
from ._losses import NLLLoss as NLLLoss
from ._module import Module as Module
from ._module import Rngs as Rngs
from ._sequential import MLP as MLP
from ._sequential import Sequential as Sequential
from ._summary import summary as summary

__all__ = [
    "MLP",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Functional",
    "GELU",
    "Identity",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "Module",
    "NLLLoss",
    "ReLU",
    "Rngs",
    "Sequential",
    "Sigmoid",
    "StaleModelError",
    "Softmax",
    "Tanh",
    "count_params",
    "functional",
    "load_state_dict",
    "split",
    "state_dict",
    "summary",
    "update",
]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)
