"""The machine a benchmark ran on: CPU, load, CPU time, matmul ceiling, versions, git state.

Shared by ``benchmarks/mnist_peers.py`` and ``benchmarks/gpu_check.sh``; every
result file records :func:`record` (CPU model, family/model, the flags that
matter for speed, cores, load average, date, jaxnet's commit, versions).
Standard library only.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# /proc/cpuinfo flags that decide matmul speed on x86: AVX2/FMA, AVX-512 (F, VNNI, BF16),
# AMX (Intel's tile matmuls: bf16 and int8).
SPEED_FLAGS = ("fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
               "amx_int8")
PACKAGES = ("jax", "jaxlib", "jax-cuda12-plugin", "numpy", "optax", "flax", "torch", "keras",
            "equinox", "matplotlib")


def cpu_info() -> dict:
    """CPU model, vendor, family/model numbers, hypervisor, cores and the speed flags."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        pass
    hypervisor = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Hypervisor vendor":
                hypervisor = value.strip()
            if key.strip() == "Model name" and not fields.get("model name"):
                fields["model name"] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "model_name": fields.get("model name") or platform.processor() or "unknown",
        "vendor": fields.get("vendor_id"),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "hypervisor": hypervisor,
        "cores": os.cpu_count(),
        "flags": {name: name in flags for name in SPEED_FLAGS},
        # kept for older readers of the JSON
        "avx512f": "avx512f" in flags,
        "avx2": "avx2" in flags,
    }


def describe_cpu(cpu: dict) -> str:
    """One line: model (family/model), cores, hypervisor and the speed flags present."""
    extra = f" (family {cpu['family']} model {cpu['model']})" if cpu.get("family") else ""
    virt = f", under {cpu['hypervisor']}" if cpu.get("hypervisor") else ""
    have = [k for k, v in cpu.get("flags", {}).items() if v]
    lacks = [k for k, v in cpu.get("flags", {}).items() if not v]
    return (f"{cpu['model_name']}{extra}, {cpu['cores']} cores{virt}; flags: "
            f"{' '.join(have) or 'none of ours'}" + (f" (no {' '.join(lacks)})" if lacks else ""))


def versions() -> dict:
    """Installed versions of the packages a benchmark touches (``None``: not installed)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict:
    """The commit this jaxnet is at, and its files under jaxnet/ that differ from it."""
    def git(*cmd):
        res = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return res.stdout.strip() if res.returncode == 0 else ""
    # "XY path" lines; the first line's leading blank (" M") is stripped with the output
    dirty = [line.split(maxsplit=1)[1]
             for line in git("status", "--porcelain", "--", "jaxnet").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "dirty": dirty}


def record() -> dict:
    """What every result file starts with: date, CPU, load average, git state, versions."""
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
            "cpu": cpu_info(), "load_average_now": list(os.getloadavg()),
            "jaxnet_git": git_state(), "versions": versions(),
            "python": platform.python_version()}


class LoadWatch:
    """Samples the 1-minute load average every ``every`` seconds in a thread."""

    def __init__(self, every: float = 2.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def max(self) -> float:
        return max(self.samples, default=os.getloadavg()[0])


def cpu_seconds() -> tuple[float, float]:
    """``(busy, steal)`` CPU seconds of the whole machine so far (``/proc/stat``; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def busy_cores(window: float = 5.0) -> float:
    """Cores the machine kept busy over the next ``window`` seconds (``/proc/stat``)."""
    busy0, _ = cpu_seconds()
    time.sleep(window)
    return (cpu_seconds()[0] - busy0) / window


def wait_for_quiet(threshold: float, wait_s: float, max_busy: float = 0.3) -> float:
    """The 1-minute load average once the machine is quiet, waiting up to ``wait_s``: the
    load average below ``threshold`` and, over 5 s, at most ``max_busy`` cores busy (the
    load average lags by a minute). Past ``wait_s``, the last load average seen."""
    deadline = time.monotonic() + wait_s
    while True:
        load = os.getloadavg()[0]
        busy = busy_cores() if load < threshold else float("nan")
        if (load < threshold and busy <= max_busy) or time.monotonic() >= deadline:
            return load if busy <= max_busy else max(load, threshold)
        print(f"load average {load:.2f}" + (f", {busy:.2f} cores busy" if busy == busy else "")
              + ": waiting for a quiet machine", flush=True)
        time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))


def matmul_ceiling(n: int = 2048) -> dict:
    """fp32 GFLOP/s of an n^3 matmul (best of 5) in numpy, PyTorch and JAX, a subprocess each."""
    code = {
        "numpy": "import numpy as np; a=np.ones(({n},{n}),np.float32); f=lambda: a@a",
        "torch": "import torch; torch.set_num_threads({t}); a=torch.ones({n},{n}); f=lambda: a@a",
        "jax": "import jax, jax.numpy as jnp; a=jnp.ones(({n},{n})); g=jax.jit(lambda a: a@a); "
               "f=lambda: g(a).block_until_ready()",
    }
    timing = ("\nimport time\nf(); best=1e9\nfor _ in range(5):\n t=time.perf_counter(); f(); "
              "best=min(best, time.perf_counter()-t)\nprint(2*{n}**3/best/1e9)")
    out = {}
    for name, setup in code.items():
        src = (setup + timing).format(n=n, t=os.cpu_count() or 1)
        res = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True)
        if res.returncode == 0:
            out[name] = float(res.stdout.strip().splitlines()[-1])
    return out


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file, then a rename)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


if __name__ == "__main__":  # the record as JSON (gpu_check.sh uses it)
    import json

    print(json.dumps(record(), indent=1))
