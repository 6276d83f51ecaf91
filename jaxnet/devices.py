"""What XLA will run on: ``torch.cuda.is_available()`` and ``.to(device)``, the JAX way.

JAX places arrays on the default device (the first GPU if jaxlib has CUDA and
one is visible, else the CPU); there is no ``.to("cuda")``. Use
``jax.device_put(x, device)`` to place data explicitly.

>>> backend() in ("cpu", "gpu", "tpu")
True
"""

from __future__ import annotations

import jax

__all__ = ["backend", "describe", "gpu_available"]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)


def backend() -> str:
    """The default backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``.

    Returns:
      The name of the platform JAX places new arrays on (``jax.default_backend()``).

    >>> backend() in ("cpu", "gpu", "tpu")
    True
    """
    return jax.default_backend()


def gpu_available() -> bool:
    """``torch.cuda.is_available()``: is a GPU visible to JAX?

    Returns:
      ``True`` if jaxlib has GPU support and at least one GPU is visible.

    >>> isinstance(gpu_available(), bool)
    True
    """
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def describe() -> str:
    """One line naming the backend, the device count and the device kinds.

    Returns:
      A string such as ``"cpu: 1 device(s) (cpu)"``.

    >>> describe().startswith(backend() + ": ")
    True
    """
    devs = jax.devices()
    kinds = sorted({d.device_kind for d in devs})
    return f"{backend()}: {len(devs)} device(s) ({', '.join(kinds)})"
