"""The public surface and the import-time rule (heavy extras load lazily)."""

import jaxnet
from conftest import run_python


def test_public_api_is_listed():
    for name in jaxnet.__all__:
        assert hasattr(jaxnet, name), name
    for module in (jaxnet.nn, jaxnet.losses, jaxnet.data, jaxnet.train, jaxnet.metrics,
                   jaxnet.checkpoint, jaxnet.datasets, jaxnet.devices):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_import_does_not_load_heavy_extras():
    code = ("import sys, jaxnet; heavy = [m for m in ('orbax', 'tqdm', 'matplotlib', "
            "'tensorflow', 'tensorflow_datasets', 'torch') if m in sys.modules]; print(heavy)")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_devices_report():
    assert jaxnet.devices.backend() in ("cpu", "gpu", "tpu")
    assert jaxnet.devices.describe().startswith(jaxnet.devices.backend())
    assert isinstance(jaxnet.devices.gpu_available(), bool)
