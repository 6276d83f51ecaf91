"""The course's MNIST (MNISTNet, Adam 0.01, batch 64, 5 epochs): PyTorch and jaxnet, 3 seeds.

The course prints a test accuracy of 0.9837 for its ``MNISTNet``; this
measures, on this machine, what its recipe gives and why:

* ``torch_lr0.01``: the course's PyTorch script exactly (``MNISTNet`` with
  ``x.view(-1, 28*28)``, ``F.relu``, ``F.log_softmax(dim=1)``, ``nn.NLLLoss``,
  ``optim.Adam(lr=0.01)``, ``DataLoader(batch_size=64, shuffle=True)``, 5
  epochs), seeded with ``torch.manual_seed(seed)``. The pixels are
  ``ToTensor()`` + ``Normalize((0.5,), (0.5,))`` computed once with numpy
  from the same IDX files (``(x / 255 - 0.5) / 0.5``, shape ``(N, 1, 28, 28)``),
  not through torchvision: the same numbers, no download. In the last epoch
  the test accuracy is also measured every ~94 steps, to show how much it
  moves within one epoch.
* ``jaxnet_lr0.01``: ``examples/mnist_course.py``'s ``MNISTNet`` trained as
  that example trains it (``losses.nll_loss``, ``optax.adam(0.01)``, ``fit``
  with batch 64, shuffled).
* ``jaxnet_lr0.001`` and ``torch_lr0.001``: the same, Adam at 1e-3, all else
  equal.
* ``recipe_course``: ``jaxnet.mnist.train_mnist(RECIPES["course"])``, what
  ``jaxnet train mnist --recipe course`` runs.

For every run: the test accuracy after each epoch (measured for this study
only; nothing is chosen on it) and the mean training loss of each epoch.
Summaries: the final accuracy per seed, its mean, the best epoch against
the last, the epoch-to-epoch wobble (how many epochs scored lower than the
one before, and the largest such drop; for PyTorch at lr 0.01 also the range
within the last epoch) and the final training loss. The last two
configurations are skipped when the run has already taken ``--budget``
seconds (recorded as skipped).

Run:  nice -n 10 python benchmarks/course_mnist.py [--data-dir ../shared/data/mnist]
      [--seeds 0 1 2] [--budget 300] [--threads 1] [--quick] [--resummarize]
Writes benchmarks/results/course_mnist.json (``--quick``: 1 seed, 1 epoch,
6,000 training images, nothing written: it only checks that everything runs).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT = HERE / "results" / "course_mnist.json"
COURSE_ACCURACY = 0.9837


def cpu_info() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return {"model_name": platform.processor() or "unknown"}
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    pick = {"model_name": "Model name", "family": "CPU family", "model": "Model",
            "cpus": "CPU(s)"}
    return {k: fields.get(v, "").strip() for k, v in pick.items()}


def course_pixels(images: np.ndarray) -> np.ndarray:
    """ToTensor() + Normalize((0.5,), (0.5,)): (N, 28, 28) uint8 -> (N, 1, 28, 28) in [-1, 1]."""
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    return (x - np.float32(0.5)) / np.float32(0.5)


# ------------------------------------------------------------------------- the course, PyTorch
def torch_run(data, seed: int, lr: float, epochs: int, probes: int = 10) -> dict:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    from torch.utils.data import DataLoader, TensorDataset

    (x, y), (x_test, y_test) = data

    # The course's code from here to the loop's end (seeded; the data as tensors).
    class MNISTNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 512)
            self.fc2 = nn.Linear(512, 256)
            self.fc3 = nn.Linear(256, 10)

        def forward(self, x):
            x = x.view(-1, 28*28)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            x = F.log_softmax(self.fc3(x), dim=1)
            return x

    torch.manual_seed(seed)
    train_loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y).long()),
                              batch_size=64, shuffle=True)
    model = MNISTNet()
    criterion = nn.NLLLoss()
    optimizer = optim.Adam(model.parameters(), lr=lr)

    xt, yt = torch.from_numpy(x_test), torch.from_numpy(y_test).long()

    def test_accuracy():
        model.eval()
        with torch.no_grad():
            _, predicted = torch.max(model(xt).data, 1)
        model.train()
        return (predicted == yt).sum().item() / len(yt)

    every = max(1, len(train_loader) // probes)
    accs, train_losses, last_epoch_probes = [], [], []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total, n = 0.0, 0
        for step, (images, labels) in enumerate(train_loader, 1):
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            n += len(labels)
            if epoch == epochs - 1 and step % every == 0:
                last_epoch_probes.append({"step": step, "test_accuracy": test_accuracy()})
        train_losses.append(total / n)
        accs.append(test_accuracy())
    return {"test_accuracy_per_epoch": accs, "train_loss_per_epoch": train_losses,
            "last_epoch_test_accuracy_every_steps": every,
            "last_epoch_test_accuracy_probes": last_epoch_probes,
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------- jaxnet
def _test_each_epoch(x_test, y_test, accs):
    from jaxnet.callbacks import Callback
    from jaxnet.train import evaluate

    class TestEachEpoch(Callback):
        def on_epoch_end(self, run, epoch, state, logs):
            accs.append(evaluate(run.apply, state, (x_test, y_test))["accuracy"])

    return TestEachEpoch()


def _example_module():
    spec = importlib.util.spec_from_file_location("mnist_course",
                                                  ROOT / "examples" / "mnist_course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jaxnet_run(data, seed: int, lr: float, epochs: int) -> dict:
    import optax

    from jaxnet import losses, nn
    from jaxnet.data import ArrayDataset
    from jaxnet.train import TrainState, fit

    (x, y), (x_test, y_test) = data
    model = _example_module().MNISTNet(rngs=nn.Rngs(seed))
    apply, params, model_state = nn.split(model)
    optimizer = optax.adam(lr)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=seed)
    accs: list[float] = []
    t0 = time.perf_counter()
    _, history = fit(state, apply, losses.nll_loss, optimizer, ArrayDataset(x, y),
                     epochs=epochs, batch_size=64, shuffle=True, seed=seed, progress=False,
                     log=None, callbacks=[_test_each_epoch(x_test, y_test, accs)])
    return {"test_accuracy_per_epoch": accs,
            "train_loss_per_epoch": [h["train_loss"] for h in history],
            "seconds": time.perf_counter() - t0}


def recipe_run(raw, seed: int, epochs: int) -> dict:
    from jaxnet import mnist

    (x, y), (x_test, y_test) = raw
    flat = ((x.reshape(len(x), -1), y), (x_test.reshape(len(x_test), -1), y_test))
    accs: list[float] = []
    # run.apply is train_mnist's: it normalises uint8 pixels itself, so the test set goes raw.
    callback = _test_each_epoch(flat[1][0], y_test, accs)
    t0 = time.perf_counter()
    config = mnist.RECIPES["course"].with_updates(seed=seed, epochs=epochs)
    result = mnist.train_mnist(config, data=flat, progress=False, log=None,
                               callbacks=[callback])
    assert abs(accs[-1] - result["test_accuracy"]) < 1e-6, (accs[-1], result["test_accuracy"])
    return {"test_accuracy_per_epoch": accs,
            "train_loss_per_epoch": [h["train_loss"] for h in result["history"]],
            "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------- summary
def summarize(runs: dict) -> dict:
    """Per configuration: the final accuracies, the best epoch, the wobble, the training loss."""
    finals = [r["test_accuracy_per_epoch"][-1] for r in runs.values()]
    per_seed = {}
    for seed, r in runs.items():
        accs = r["test_accuracy_per_epoch"]
        # an epoch that scored lower than the one before, by how much
        drops = [a - b for a, b in zip(accs[:-1], accs[1:], strict=True) if b < a]
        per_seed[seed] = {
            "final": accs[-1], "best": max(accs), "best_epoch": 1 + accs.index(max(accs)),
            "epochs_worse_than_the_one_before": len(drops),
            "largest_drop": max(drops, default=0.0),
            "final_train_loss": r["train_loss_per_epoch"][-1],
        }
        probes = [p["test_accuracy"] for p in r.get("last_epoch_test_accuracy_probes", [])]
        if probes:
            per_seed[seed]["last_epoch_probes_min_max"] = [min(probes), max(probes)]
    return {
        "final_test_accuracy": finals,
        "final_mean": statistics.fmean(finals),
        "final_min": min(finals), "final_max": max(finals),
        "best_epoch_mean": statistics.fmean(p["best"] for p in per_seed.values()),
        "final_train_loss_mean": statistics.fmean(p["final_train_loss"]
                                                  for p in per_seed.values()),
        "seeds_reaching_course_accuracy_final": sum(f >= COURSE_ACCURACY for f in finals),
        "seeds_reaching_course_accuracy_any_epoch":
            sum(any(a >= COURSE_ACCURACY for a in r["test_accuracy_per_epoch"])
                for r in runs.values()),
        "per_seed": per_seed,
    }


def resummarize() -> None:
    """Recompute the summaries of the written results from their stored runs (no training)."""
    out = json.loads(RESULT.read_text())
    for config in out["configs"].values():
        config["summary"] = summarize(config["runs"])
    RESULT.write_text(json.dumps(out, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST IDX files (default: $JAXNET_DATA_DIR)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds after which the optional configurations are skipped")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for PyTorch and XLA (1: on a shared machine two "
                             "spinning thread pools made PyTorch's steps 13x slower)")
    parser.add_argument("--resummarize", action="store_true",
                        help="only recompute the summaries in the results file from its runs")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 1 epoch, 6,000 images; writes nothing")
    args = parser.parse_args(argv)
    if args.resummarize:
        resummarize()
        return 0
    if args.threads == 1:  # before jax is imported; the results do not depend on it
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false").strip()
    import torch

    torch.set_num_threads(args.threads)
    from jaxnet import datasets

    start = time.perf_counter()
    images, labels = datasets.load_mnist("train", args.data_dir)
    test_images, test_labels = datasets.load_mnist("test", args.data_dir)
    epochs, seeds = 5, args.seeds
    if args.quick:
        images, labels, epochs, seeds = images[:6000], labels[:6000], 1, seeds[:1]
    raw = ((images, labels), (test_images, test_labels))
    data = ((course_pixels(images), labels), (course_pixels(test_images), test_labels))

    plan = [  # (name, essential, run(seed))
        ("torch_lr0.01", True, lambda s: torch_run(data, s, 0.01, epochs)),
        ("jaxnet_lr0.01", True, lambda s: jaxnet_run(data, s, 0.01, epochs)),
        ("jaxnet_lr0.001", True, lambda s: jaxnet_run(data, s, 1e-3, epochs)),
        ("torch_lr0.001", False, lambda s: torch_run(data, s, 1e-3, epochs)),
        ("recipe_course", False, lambda s: recipe_run(raw, s, epochs)),
    ]
    configs, skipped = {}, []
    for name, essential, run in plan:
        runs = {}
        for seed in seeds:
            if not essential and time.perf_counter() - start > args.budget:
                skipped.append(f"{name} seed {seed}")
                continue
            try:
                runs[seed] = run(seed)
            except Exception as e:  # an optional extra must not lose the measured ones
                if essential:
                    raise
                skipped.append(f"{name} seed {seed}: {type(e).__name__}: {e}")
                continue
            accs = " ".join(f"{a:.4f}" for a in runs[seed]["test_accuracy_per_epoch"])
            print(f"{name:15s} seed {seed}: test accuracy per epoch {accs}  "
                  f"({runs[seed]['seconds']:.0f} s)", flush=True)
        if runs:
            configs[name] = {"runs": {str(s): r for s, r in runs.items()},
                             "summary": summarize({str(s): r for s, r in runs.items()})}

    import jax

    out = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
        "cpu": cpu_info(),
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "torch": torch.__version__, "threads": args.threads},
        "course_accuracy": COURSE_ACCURACY,
        "recipe": {"model": "784-512-256-10 ReLU, log_softmax + NLL", "optimizer": "adam",
                   "batch_size": 64, "epochs": epochs, "shuffle": True,
                   "normalize": "(x / 255 - 0.5) / 0.5", "train_images": len(images),
                   "validation_split": 0},
        "seeds": seeds,
        "configs": configs,
        "skipped": skipped,
        "seconds_total": time.perf_counter() - start,
    }
    print(json.dumps({k: v["summary"]["final_test_accuracy"] for k, v in configs.items()}))
    if args.quick:
        print("--quick: nothing written")
        return 0
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULT.relative_to(ROOT)} in {out['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
