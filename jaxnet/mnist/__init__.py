"""The course's capstone, the MNIST MLP, as importable functions.

Contract: ``train_mnist(config)`` is all that ``jaxnet train mnist`` does, and
``convert`` all that ``jaxnet convert`` does; ``MnistConfig`` holds every
setting a run depends on (stored with its checkpoints, a resume needs the same)
and is the one source of the command's flags. Same config and data → the same
parameters, bit for bit. Train, validation and test stay apart: recipes are
chosen on validation only.

What it offers: ``train_mnist`` and ``MnistConfig`` (with its named
``RECIPES``), the steps of a run one by one (``load_data``, ``normalize``,
``split_validation``, ``build_model``, ``make_optimizer``,
``steps_per_epoch``), and ``convert`` between PyTorch state-dict files and
checkpoints.

>>> MnistConfig().with_updates(lr=1e-3).lr
0.001
"""

# For developers, where things live:
# Files: ``_config`` (``MnistConfig``, ``RECIPES``, the MLP's layer sizes) ·
# ``_train`` (``load_data``, ``normalize``, ``split_validation``,
# ``build_model``, ``make_optimizer``, ``steps_per_epoch``, ``train_mnist``) ·
# ``_convert`` (``convert``: PyTorch state-dict files ↔ checkpoints).

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._config import RECIPES as RECIPES
from ._config import MnistConfig as MnistConfig

__all__ = ["RECIPES", "MnistConfig", "build_model", "convert", "load_data", "make_optimizer",
           "normalize", "split_validation", "steps_per_epoch", "train_mnist"]

# The rest loads JAX, so it loads on first use (PEP 562): the `jaxnet` command
# builds its flags from MnistConfig without JAX (a fast --help, and its Ctrl-C
# handler in place before JAX loads).
_LAZY = {"build_model": "_train", "load_data": "_train", "make_optimizer": "_train",
         "normalize": "_train", "split_validation": "_train", "steps_per_epoch": "_train",
         "train_mnist": "_train", "convert": "_convert"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(_importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(__all__)


if _TYPE_CHECKING:  # what static tools and IDEs see
    from ._convert import convert as convert
    from ._train import build_model as build_model
    from ._train import load_data as load_data
    from ._train import make_optimizer as make_optimizer
    from ._train import normalize as normalize
    from ._train import split_validation as split_validation
    from ._train import steps_per_epoch as steps_per_epoch
    from ._train import train_mnist as train_mnist
