"""MNIST through tensorflow-datasets (extra ``jaxnet-course[tfds]``), imported only if asked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def tfds_data_dir() -> Path:
    """Where TFDS keeps its prepared copy: ``$JAXNET_TFDS_DIR`` or ``~/.cache/jaxnet/tfds``."""
    env = os.environ.get("JAXNET_TFDS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxnet" / "tfds"


def load_mnist_tfds(split: str, idx_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Prepare (once) and load MNIST with TFDS; offline when ``idx_dir`` has the IDX files."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(f"source='tfds' needs tensorflow-datasets and tensorflow: "
                          f"pip install 'jaxnet-course[tfds]' ({e})") from None
    tf.config.set_visible_devices([], "GPU")  # leave the GPU's memory to JAX
    builder = tfds.builder("mnist", data_dir=str(tfds_data_dir()))
    manual = idx_dir if (idx_dir / "train-images-idx3-ubyte.gz").is_file() else None
    config = tfds.download.DownloadConfig(manual_dir=str(manual) if manual else None)
    builder.download_and_prepare(download_config=config)
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return data["image"][..., 0], data["label"].astype(np.int32)
