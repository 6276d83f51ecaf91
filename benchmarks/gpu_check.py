"""The GPU check (``bash benchmarks/gpu_check.sh [out.json]``): what has never run here, on one GPU.

On a machine with one NVIDIA GPU and a CUDA jaxlib (``pip install -U
"jax[cuda12]"``; for the PyTorch rows a CUDA build of torch), in under five
minutes, one JSON:

1. the GPU test (``tests/test_package.py::test_training_runs_on_the_gpu_when_one_is_visible``,
   which must pass, not skip);
2. the CLI's course and default recipes (``jaxnet train mnist --recipe course``,
   ``jaxnet train mnist``), test accuracy and time;
3. the bf16 policy (``jaxnet train mnist --precision bf16``), against (2);
4. the peer benchmark's jaxnet (float32 and bf16) and PyTorch (``--device
   cuda``) rows at batch 64, 1024 and 8192: steady epoch, test accuracy.

Without a GPU it prints one line (``no GPU: ...``) and exits 1. A step that
fails is recorded with its last lines and the check goes on; the exit status
is then 1. Data: ``$JAXNET_DATA_DIR`` (or jaxnet's default folder). Kept out
of CI: nothing runs it but a person with a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
BATCHES = (64, 1024, 8192)
PEER_EPOCHS = 3
STEP_TIMEOUT = 150  # seconds; the whole check is meant to take < 5 minutes


def gpu_or_exit() -> list[str]:
    """The GPU devices JAX sees; without one, one line on stderr and exit 1."""
    probe = ("import jax, json; d = jax.devices(); "
             "print(json.dumps([x.platform + ':' + x.device_kind for x in d]))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"no GPU: JAX did not start ({last})")
    devices = json.loads(res.stdout.strip().splitlines()[-1])
    gpus = [d for d in devices if d.startswith(("gpu:", "cuda:"))]
    if not gpus:
        sys.exit(f"no GPU: jax.devices() shows {', '.join(devices)}; this check needs one NVIDIA "
                 "GPU and a CUDA jaxlib (pip install -U \"jax[cuda12]\")")
    return gpus


def tail(text: str, n: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_step(name: str, cmd: list[str], timeout: float = STEP_TIMEOUT) -> dict:
    """Run ``cmd``; its status, seconds and last lines."""
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        status, out = res.returncode, res.stdout + res.stderr
    except subprocess.TimeoutExpired as err:
        status, out = "timeout", f"{err.stdout or ''}{err.stderr or ''}"
        out = out if isinstance(out, str) else ""
    row = {"step": name, "command": cmd, "status": status,
           "seconds": time.perf_counter() - start, "tail": tail(out)}
    print(f"[{name}] {'ok' if status == 0 else f'FAILED ({status})'} in {row['seconds']:.1f} s",
          flush=True)
    return row


def cli_step(name: str, flags: list[str], work: Path) -> dict:
    out = work / f"{name}.json"
    row = run_step(name, [sys.executable, "-m", "jaxnet", "train", "mnist", *flags,
                          "--no-progress", "--json", str(out)])
    if row["status"] == 0 and out.exists():
        result = json.loads(out.read_text())
        row["result"] = {k: result[k] for k in ("test_accuracy", "epoch_seconds",
                                                "compile_seconds") if k in result}
    return row


def peer_rows() -> list[dict]:
    """jaxnet (float32, bf16) and PyTorch (cuda) at each batch size, via the peer scripts."""
    import mnist_peers

    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxnet-gpu-check-") as round_dir:
        for batch in BATCHES:
            for key, extra in (("jaxnet", ()), ("jaxnet", ("--precision", "bf16")),
                               ("pytorch", ("--device", "cuda"))):
                name = f"{key}{' bf16' if 'bf16' in extra else ''} batch {batch}"
                row = {"row": name, "batch_size": batch}
                try:
                    res = mnist_peers.run_peer(
                        mnist_peers.BY_KEY[key], epochs=PEER_EPOCHS, batch_size=batch,
                        hidden=[512, 256], seed=0, data_dir=None, round_dir=round_dir,
                        args=extra)
                    row.update(epochs=res["epochs"], steady_epoch_s=mnist_peers.steady(
                        res["epochs"]), test_accuracy=res["test_accuracy"],
                        time_to_result_s=res["time_to_result_s"])
                    print(f"[peers] {name}: {row['steady_epoch_s']:.3f} s/epoch, accuracy "
                          f"{row['test_accuracy']:.4f}", flush=True)
                except mnist_peers.PeerError as why:
                    row["error"] = tail(str(why), 4)
                    print(f"[peers] {name}: FAILED {row['error'].splitlines()[-1]}", flush=True)
                rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    gpus = gpu_or_exit()
    import _machine

    out = Path(argv[0]) if argv else (
        HERE / "results" / f"gpu_check-{time.strftime('%Y%m%dT%H%M', time.gmtime())}.json")
    report = {**_machine.record(), "gpus": gpus}
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True)
    report["nvidia_smi"] = smi.stdout.strip() if smi.returncode == 0 else None
    print(f"GPU: {', '.join(gpus)} ({report['nvidia_smi']})", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxnet-gpu-check-") as work:
        steps = [run_step("gpu_test", [sys.executable, "-m", "pytest", "-q", "-rs",
                                       "tests/test_package.py", "-k", "gpu"])]
        if steps[0]["status"] == 0 and "skipped" in steps[0]["tail"]:
            steps[0]["status"] = "skipped (JAX saw no GPU in pytest)"
        steps += [cli_step("cli_course", ["--recipe", "course"], Path(work)),
                  cli_step("cli_default", [], Path(work)),
                  cli_step("cli_default_bf16", ["--precision", "bf16"], Path(work))]
    report["steps"] = steps
    report["peers"] = peer_rows()
    report["seconds"] = time.perf_counter() - start
    _machine.write_json(out, report)
    failed = [s["step"] for s in steps if s["status"] != 0] + [
        r["row"] for r in report["peers"] if "error" in r]
    print(f"wrote {out} ({report['seconds']:.0f} s)"
          + (f"; failed: {', '.join(failed)}" if failed else "; all steps passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
