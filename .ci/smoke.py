"""Smoke test of an installed jaxnet (a wheel, not the checkout): run from outside the checkout.

Imports jaxnet and every public module, runs the ``jaxnet --help`` console
script, and trains a tiny model for one epoch on arrays.
"""

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import jaxnet

where = Path(jaxnet.__file__).resolve()
if "site-packages" not in where.parts:
    sys.exit(f"smoke: expected jaxnet from an installed wheel (site-packages), got {where}")
modules = [n for n in jaxnet.__all__ if inspect.ismodule(getattr(jaxnet, n))]
for name in modules:
    module = importlib.import_module(f"jaxnet.{name}")
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"jaxnet.{name}: missing {missing}"

script = Path(sys.executable).with_name("jaxnet")  # the wheel's console script
out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
assert "usage: jaxnet" in out, out

import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxnet import losses, nn  # noqa: E402
from jaxnet.train import TrainState, fit  # noqa: E402

apply, params, model_state = nn.split(nn.Linear(2, 2, rngs=nn.Rngs(0)))
state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
state, history = fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data, epochs=1,
                     batch_size=4, progress=False, log=None)
assert len(history) == 1 and np.isfinite(history[0]["train_loss"]), history
print(f"smoke: jaxnet {where.parent} ok: {len(modules)} modules, --help, 1 epoch "
      f"(train_loss {history[0]['train_loss']:.4f})")
