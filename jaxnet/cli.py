"""The ``jaxnet`` command: ``jaxnet train mnist [options]``.

Flags and printing live here; the work is ``jaxnet.mnist.train_mnist``.

    jaxnet train mnist --data-dir ../shared/data/mnist
    jaxnet train mnist --recipe course --json run.json --plot curves.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

_START = time.perf_counter()


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes such as 512,256, got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive layer sizes, got {text!r}")
    return sizes


def _positive(kind):
    article = "an" if kind is int else "a"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {article} {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxnet", description="jaxnet: PyTorch's beginner "
                                     "workflow as pure JAX functions.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model")
    tasks = train.add_subparsers(dest="task", required=True)
    p = tasks.add_parser("mnist", help="the MNIST MLP (784-512-256-10)",
                         description="Train the course's MNIST MLP. Flags override the recipe.")
    p.add_argument("--recipe", choices=["default", "course"], default="default",
                   help="default: tuned to reach >=0.98; course: the course's exact settings")
    p.add_argument("--data-dir", help="folder with the four IDX files (any IDX-layout dataset); "
                   "default $JAXNET_DATA_DIR or ~/.cache/jaxnet/mnist, downloaded if missing")
    p.add_argument("--source", choices=["idx", "tfds"], default="idx",
                   help="data backend (tfds needs pip install 'jaxnet[tfds]')")
    p.add_argument("--epochs", type=_positive(int))
    p.add_argument("--batch-size", type=_positive(int))
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--lr", type=_positive(float), help="(peak) learning rate")
    p.add_argument("--momentum", type=float, help="SGD momentum in [0, 1)")
    p.add_argument("--schedule", choices=["constant", "warmup_cosine"])
    p.add_argument("--hidden", type=_hidden, help="hidden layer sizes, e.g. 512,256")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-dir", help="save the full state after every epoch here")
    p.add_argument("--keep", type=_positive(int), default=3, help="checkpoints to keep (3)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest intact checkpoint in --checkpoint-dir")
    p.add_argument("--no-check-finite", dest="check_finite", action="store_false",
                   help="do not stop on NaN/Inf losses or gradients")
    p.add_argument("--plot", help="save loss and accuracy curves to this PNG (needs matplotlib)")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --json/--plot to replace existing files")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    _add_convert_parser(commands)
    return parser


def _check_outputs(args, parser) -> None:
    """Fail before training, not after, when an output cannot be written."""
    for flag in ("json", "plot"):
        path = getattr(args, flag)
        if path is None:
            continue
        path = Path(path)
        if path.exists() and not args.overwrite:
            parser.error(f"--{flag}: {path} already exists; pass --overwrite to replace it")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            parser.error(f"--{flag}: cannot write {path}: {parent} is not a writable folder")
    if args.resume and not args.checkpoint_dir:
        parser.error("--resume: needs --checkpoint-dir")
    if args.checkpoint_dir:
        from . import checkpoint

        try:
            checkpoint.check_new_run(args.checkpoint_dir, resume=args.resume,
                                     name="--checkpoint-dir", resume_name="--resume")
        except checkpoint.CheckpointError as e:
            parser.error(str(e))


def _plot(history, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [e["train_loss"] for e in history], "o-", label="train")
    ax1.plot(epochs, [e["val_loss"] for e in history], "o-", label="test")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    ax2.plot(epochs, [e["val_accuracy"] for e in history], "o-", color="C2")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Test accuracy")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _train_mnist(args, parser) -> int:
    from .mnist import RECIPES, train_mnist

    try:
        config = RECIPES[args.recipe].with_updates(
            epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
            lr=args.lr, momentum=args.momentum, schedule=args.schedule, hidden=args.hidden,
            seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    from . import devices

    print(f"jaxnet: MNIST MLP 784-{'-'.join(map(str, config.hidden))}-10, recipe "
          f"{args.recipe}: {config.optimizer} lr {config.lr} ({config.schedule}), batch "
          f"{config.batch_size}, {config.epochs} epochs, seed {config.seed}; "
          f"{devices.describe()}", flush=True)
    result = train_mnist(config, data_dir=args.data_dir, source=args.source,
                         checkpoint_dir=args.checkpoint_dir, resume=args.resume, keep=args.keep,
                         check_finite=args.check_finite, progress=args.progress,
                         log=lambda line: print(line, flush=True))
    print(f"test accuracy: {result['test_accuracy']:.4f}", flush=True)
    print(f"compile {result['compile_seconds']:.2f}s, training {result['train_seconds']:.2f}s, "
          f"time to result {time.perf_counter() - _START:.2f}s; "
          f"params fingerprint {result['params_fingerprint'][:16]}")
    if args.json:
        out = {k: result[k] for k in ("test_accuracy", "epoch_seconds", "compile_seconds",
                                      "train_seconds", "params_fingerprint", "config",
                                      "history")}
        out["time_to_result_seconds"] = time.perf_counter() - _START
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        _plot(result["history"], args.plot)
        print(f"wrote {args.plot}")
    return 0


_CONFIG_FLAGS = ("recipe", "hidden", "epochs", "batch_size", "optimizer", "lr", "momentum",
                 "schedule", "seed")


def _add_convert_parser(commands) -> None:
    """``jaxnet convert SOURCE --to DESTINATION``: PyTorch state dicts <-> checkpoints."""
    p = commands.add_parser(
        "convert", help="a PyTorch state dict to a jaxnet checkpoint, and back",
        description="Convert the MNIST MLP between a PyTorch state dict (.pt/.pth/.bin, read "
        "only with torch.load(weights_only=True); or .safetensors, no PyTorch needed) and a "
        "jaxnet train mnist checkpoint folder. A converted checkpoint has the weights and a "
        "fresh optimizer state (a state dict holds none) at epoch --trained-epochs: resume it "
        "with jaxnet train mnist --checkpoint-dir DIR --resume and the same settings.")
    p.add_argument("source", help="model.pt|.pth|.bin|.safetensors, or a checkpoint folder")
    p.add_argument("--to", dest="destination", required=True, metavar="DESTINATION",
                   help="a new or empty checkpoint folder, or a .safetensors/.pt file")
    g = p.add_argument_group("the model and its training settings (as for jaxnet train mnist; "
                             "from a checkpoint they are read from its saved config)")
    g.add_argument("--recipe", choices=["default", "course"],
                   help="default: logits; course: log-softmax output (NLL loss)")
    g.add_argument("--hidden", type=_hidden, help="hidden layer sizes, e.g. 512,256")
    g.add_argument("--epochs", type=_positive(int))
    g.add_argument("--batch-size", type=_positive(int))
    g.add_argument("--optimizer", choices=["adam", "sgd"])
    g.add_argument("--lr", type=_positive(float))
    g.add_argument("--momentum", type=float)
    g.add_argument("--schedule", choices=["constant", "warmup_cosine"])
    g.add_argument("--seed", type=int)
    p.add_argument("--trained-epochs", type=int, default=0, metavar="N",
                   help="record the weights as N epochs trained (0): --resume with --epochs N "
                   "then only evaluates them")
    p.add_argument("--step", type=int, help="which checkpoint of a folder (default newest)")
    p.add_argument("--key", help="the state dict's entry in a .pt training checkpoint dict, "
                   "e.g. model_state_dict")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --to file")


def _convert(args) -> int:
    from . import interop
    from .checkpoint import CheckpointError

    given = [f for f in _CONFIG_FLAGS if getattr(args, f) is not None]
    try:
        config = None
        if given:
            from .mnist import RECIPES

            config = RECIPES[args.recipe or "default"].with_updates(
                **{f: getattr(args, f) for f in given if f != "recipe"})
        result = interop.convert(args.source, args.destination, config=config,
                                 trained_epochs=args.trained_epochs, step=args.step,
                                 key=args.key, overwrite=args.overwrite)
    except (CheckpointError, OSError, ValueError, ImportError) as e:
        # One line, no traceback: these are the user's to fix, and the message says how.
        print(f"jaxnet: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jaxnet: interrupted", file=sys.stderr)
        return 130
    what = f"{result['arrays']} arrays, {result['params']:,} values"
    if result["config"] is not None:
        what = f"MLP 784-{'-'.join(map(str, result['config'].hidden))}-10, {what}"
    print(f"converted {args.source} -> {args.destination} ({what})")
    if result["direction"] == "file->checkpoint":
        flags = [f"--{f.replace('_', '-')} "
                 + (",".join(map(str, v)) if isinstance(v := getattr(args, f), tuple) else str(v))
                 for f in given]
        print(f"epoch {result['epoch']}, fresh optimizer state; continue with: jaxnet train "
              f"mnist --checkpoint-dir {args.destination} --resume {' '.join(flags)}".rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "convert":
        return _convert(args)
    _check_outputs(args, parser)
    from .checkpoint import CheckpointError
    from .train import NonFiniteError

    try:
        return _train_mnist(args, parser)
    except (CheckpointError, NonFiniteError, FileNotFoundError, ValueError, ImportError) as e:
        # One line, no traceback: these are the user's to fix, and the message says how.
        print(f"jaxnet: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jaxnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
