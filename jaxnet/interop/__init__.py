"""PyTorch state dicts and safetensors files in and out of jaxnet models, never unpickling.

A PyTorch ``state_dict`` names each array by the module path PyTorch gives it
(``layers.0.weight``, ``fc1.bias``, ``bn.running_mean``); a jaxnet model holds
the same arrays under its NNX attribute paths. This module maps one onto the
other by structure and order:

* ``Linear``: PyTorch's ``weight`` is ``(out_features, in_features)``; jaxnet's
  ``kernel`` is its transpose, ``(in_features, out_features)``. ``bias`` is the same.
* ``BatchNorm1d``: ``weight``, ``bias``, ``running_mean``, ``running_var`` as
  they are; PyTorch's ``num_batches_tracked`` counter is written on export (as
  0: jaxnet does not count, and PyTorch only reads it when ``momentum=None``)
  and accepted and ignored on import.
* ``ReLU``, ``Sigmoid``, ``Tanh``, ``GELU``, ``Identity``, ``Softmax``,
  ``LogSoftmax``, ``Flatten``, ``Dropout`` hold no arrays: they only take an
  index in a ``Sequential``, as in PyTorch.
* ``Sequential`` and ``MLP``: layer ``i`` is ``i.`` (NNX keeps the layers in
  a list attribute ``layers``, which PyTorch's ``nn.Sequential`` does not
  have, so that level is left out of the name); a user module's attributes
  keep their names (``self.layers = nn.Sequential(...)`` gives
  ``layers.0.weight``; ``self.fc1 = nn.Linear(...)`` gives ``fc1.weight``).

Files: ``.safetensors`` through the ``safetensors`` package's numpy API (no
PyTorch needed: ``pip install 'jaxnet-course[interop]'``); ``.pt``/``.pth``/``.bin``
only through ``torch.load(path, weights_only=True, map_location="cpu")``, which
refuses any pickled object other than tensors and plain containers (``pip
install 'jaxnet-course[torch]'``). There is no fallback to full unpickling.

Contract: a model given as a template is copied, never changed; a key that
does not fit is never dropped silently (``StateDictMismatchError`` lists them
all); files are written atomically and never replace one unless asked.

``convert`` moved to ``jaxnet.mnist.convert`` (it is MNIST application logic);
``jaxnet.interop.convert`` still finds it, for this release only.

>>> from jaxnet import nn
>>> model = nn.MLP(4, [3], 2, rngs=0)
>>> sd = to_torch_state_dict(model)
>>> {k: v.shape for k, v in sd.items()}
{'0.weight': (3, 4), '0.bias': (3,), '2.weight': (2, 3), '2.bias': (2,)}
>>> other = nn.MLP(4, [3], 2, rngs=1)
>>> loaded = from_torch_state_dict(sd, other)  # into other, in place
>>> loaded is other, bool((other[0].kernel[...] == model[0].kernel[...]).all())
(True, True)
"""

# For developers, where things live:
# Files: ``_keys`` (PyTorch key ↔ NNX path, key order; names via
# ``jaxnet._torchnames``) · ``_state_dict`` (``from_torch_state_dict``,
# ``to_torch_state_dict``, value conversion, ``StateDictMismatchError``) ·
# ``_files`` (``load``/``save`` of ``.safetensors`` and ``.pt``).

import importlib as _importlib

from ._files import load as load
from ._files import save as save
from ._state_dict import StateDictMismatchError as StateDictMismatchError
from ._state_dict import from_torch_state_dict as from_torch_state_dict
from ._state_dict import to_torch_state_dict as to_torch_state_dict

__all__ = [
    "StateDictMismatchError",
    "convert",
    "from_torch_state_dict",
    "load",
    "save",
    "to_torch_state_dict",
]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)


def __getattr__(name: str):
    """``interop.convert``: deprecated, its home is now ``jaxnet.mnist.convert``.

    A lookup at call time (``mnist`` sits above ``interop``, which must not
    import it); this shim goes in the next release.
    """
    if name == "convert":
        return _importlib.import_module("jaxnet.mnist").convert
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
