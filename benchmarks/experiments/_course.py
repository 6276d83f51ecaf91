"""The course recipe's compiled epoch, set up once for the experiments in this folder.

jaxnet's whole-epoch scan (``train.make_epoch``) for the course recipe
(784-512-256-10, log-softmax + NLL, Adam 0.01, batch 64), with uint8 pixels
normalised inside the step, as ``jaxnet train mnist --recipe course`` runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import _common  # noqa: E402  (numpy only: the shared IDX reader)


class CourseEpoch(NamedTuple):
    epoch: Any  # the jitted run_epoch(state, data, indices, mask)
    new_state: Any  # () -> a fresh TrainState at the recipe's seed
    data: tuple  # (x uint8 (60000, 784), y int32 (60000,)) on the device
    batches: list  # per epoch: (indices, mask), each (938, 64), on the device


def course_epoch(data_dir: str | None, epochs: int) -> CourseEpoch:
    """The pieces to compile and run ``epochs`` course epochs from the same start."""
    import jax

    from jaxnet import losses, mnist, nn, train
    from jaxnet.data import ArrayDataset, DataLoader

    config = mnist.RECIPES["course"]
    x, y = _common.load_split(_common.data_dir(data_dir), "train")
    y = y.astype(np.int32)
    loader = DataLoader(ArrayDataset(x, y), batch_size=config.batch_size, shuffle=True,
                        seed=config.seed)
    model_apply, params, model_state = nn.split(mnist.build_model(config))

    def apply(params, model_state, pixels, **mode):
        return model_apply(params, model_state, mnist.normalize(pixels), **mode)

    optimizer = mnist.make_optimizer(config, len(loader))
    return CourseEpoch(
        epoch=train.make_epoch(apply, losses.nll_loss, optimizer),
        new_state=lambda: train.TrainState.create(params, optimizer, model_state=model_state),
        data=(jax.device_put(x), jax.device_put(y)),
        batches=[tuple(jax.device_put(a) for a in loader.index_batches(e)) for e in range(epochs)],
    )
