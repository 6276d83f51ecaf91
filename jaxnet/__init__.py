"""jaxnet: the classic PyTorch beginner workflow as pure JAX functions.

Modules (one concept each):

* ``jaxnet.nn`` — models (Flax NNX): ``Module``, ``Linear``, ``ReLU``…,
  ``Dropout``, ``BatchNorm1d``, ``Sequential``, ``MLP``, ``split``,
  ``summary``, ``count_params``, ``state_dict``.
* ``jaxnet.losses`` — ``cross_entropy``, ``nll_loss``, ``binary_cross_entropy``,
  ``binary_cross_entropy_with_logits``, ``mse_loss`` with ``reduction=``.
* ``jaxnet.data`` — ``Dataset``, ``ArrayDataset``, ``DataLoader``, ``random_split``.
* ``jaxnet.train`` — ``TrainState``, ``make_train_step``, ``make_epoch``,
  ``make_epoch_runner``, ``evaluate``, ``fit``.
* ``jaxnet.callbacks`` — ``Callback`` and the built-ins ``fit`` uses:
  ``ProgressBar``, ``EpochLog``, ``Checkpoint``, ``FiniteCheck``, ``EarlyStopping``.
* ``jaxnet.metrics`` — ``accuracy``, ``precision_recall_f1``, ``confusion_matrix``.
* ``jaxnet.checkpoint`` — ``save``, ``restore``, ``latest_step`` (no pickle).
* ``jaxnet.datasets`` — ``load_mnist``, ``load_idx``, ``to_float``.
* ``jaxnet.devices`` — what XLA will run on.
* ``jaxnet.interop`` — PyTorch state dicts and ``.safetensors``/``.pt`` files in and out
  (``from_torch_state_dict``, ``to_torch_state_dict``, ``load``, ``save``); never unpickles.
* ``jaxnet.parallel`` — data parallel over several devices and processes (``make_mesh``,
  ``fit(..., mesh=)``, ``initialize_distributed``).
* ``jaxnet.optim`` — what ``torch.optim`` users look for: ``freeze`` a layer,
  ``learning_rate`` / ``set_learning_rate`` mid-run (the optimizers are optax's).
* ``jaxnet.load(path, into=model)`` — a trained model back for prediction in one call
  (a run folder, a step, a saved state dict, ``.safetensors`` or ``.pt``).
* ``jaxnet.mnist`` — the capstone: ``train_mnist``, ``MnistConfig``, ``RECIPES``.

Every module loads on first use: ``import jaxnet`` itself imports nothing heavy.

Optimizers are optax's, used directly: ``optax.sgd``, ``optax.adam``.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The modules and names below load on first use (PEP 562), so `import jaxnet`
# costs nothing until something is used, and the `jaxnet` command can install
# its Ctrl-C handler before JAX starts loading.
_SUBMODULES = ("callbacks", "checkpoint", "data", "datasets", "devices", "interop", "losses",
               "metrics", "mnist", "nn", "optim", "parallel", "train")
_NAMES = {
    "MLP": "nn",
    "ArrayDataset": "data",
    "DataLoader": "data",
    "Dataset": "data",
    "random_split": "data",
    "TrainState": "train",
    "evaluate": "train",
    "fit": "train",
    "make_epoch": "train",
    "make_train_step": "train",
    "fingerprint": "_tree",
    "load": "_loading",
}

__all__ = sorted([*_SUBMODULES, *_NAMES], key=lambda name: (name[0].islower(), name))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'jaxnet' has no attribute {name!r}")


def _public_modules() -> list:
    """``jaxnet`` and every module a public module names in its ``__all__`` (imported), in
    breadth-first order: the walk the API reference and its tests share."""
    found, todo = [], [__name__]
    while todo:
        name = todo.pop(0)
        module = importlib.import_module(name)
        found.append(module)
        todo += [f"{name}.{member}" for member in module.__all__
                 if isinstance(getattr(module, member), types.ModuleType)]
    return found


def __dir__() -> list[str]:
    return [*__all__, "__version__"]


if TYPE_CHECKING:  # what static tools and IDEs see
    from . import callbacks as callbacks
    from . import checkpoint as checkpoint
    from . import data as data
    from . import datasets as datasets
    from . import devices as devices
    from . import interop as interop
    from . import losses as losses
    from . import metrics as metrics
    from . import mnist as mnist
    from . import nn as nn
    from . import optim as optim
    from . import parallel as parallel
    from . import train as train
    from ._loading import load as load
    from ._tree import fingerprint as fingerprint
    from .data import ArrayDataset as ArrayDataset
    from .data import DataLoader as DataLoader
    from .data import Dataset as Dataset
    from .data import random_split as random_split
    from .nn import MLP as MLP
    from .train import TrainState as TrainState
    from .train import evaluate as evaluate
    from .train import fit as fit
    from .train import make_epoch as make_epoch
    from .train import make_train_step as make_train_step
