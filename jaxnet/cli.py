"""The ``jaxnet`` command: ``jaxnet train mnist [options]``.

Flags and printing live here; the work is ``jaxnet.mnist.train_mnist``.

    jaxnet train mnist --data-dir ../shared/data/mnist
    jaxnet train mnist --recipe course --json run.json --plot curves.png

How it fails: a malformed flag prints the usage of the command it belongs
to (exit 2); every other expected failure prints one line ``jaxnet: error: …``
and no traceback (exit 2 when a flag's value is unusable, found before
training; exit 1 otherwise). SIGINT/SIGTERM end with one line and exit 130/143
at any moment (a checkpoint being saved is finished first), and ``--resume``
continues exactly. ``--json``/``--plot`` are checked before training and
written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_IMPORTED = time.perf_counter()
_calls = 0
_SEED_LIMIT = 2**32  # jax.random.PRNGKey keeps 32 bits of a seed


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` so that the same cleanup runs."""


class _FlagError(Exception):
    """A flag's value cannot work (found before training): one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """No abbreviations; an unknown argument is reported with the usage of the command
    it was given to (``jaxnet train mnist``), not the top-level one."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


# --------------------------------------------------------------------------- flag types


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes such as 512,256, got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive layer sizes, got {text!r}")
    return sizes


def _number(kind, *, minimum=None, above=None, below=None, what: str | None = None):
    """An argparse type: ``kind`` (int/float) within bounds, with a message naming both."""
    article = "an" if kind is int else "a"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {article} {kind.__name__}, got {text!r}") from None
        if (minimum is not None and value < minimum) or (above is not None and not value > above) \
                or (below is not None and not value < below):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_POSITIVE_INT = _number(int, above=0, what="a positive int")
_POSITIVE_FLOAT = _number(float, above=0, what="a positive float")
_NON_NEGATIVE_INT = _number(int, minimum=0, what="a non-negative int")
_PROBABILITY = _number(float, minimum=0, below=1, what="a probability in [0, 1)")
_SEED = _number(int, minimum=0, below=_SEED_LIMIT,
                what=f"an int in [0, {_SEED_LIMIT - 1}] (jax.random.PRNGKey keeps 32 bits)")


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    """``jaxnet <command> …``: one ``_add_<command>`` function per subcommand."""
    parser = _Parser(prog="jaxnet", description="jaxnet: PyTorch's beginner workflow as pure "
                     "JAX functions.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands)
    _add_convert(commands)
    return parser


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a model")
    tasks = train.add_subparsers(dest="task", required=True, parser_class=_Parser)
    _add_train_mnist(tasks)


def _add_train_mnist(tasks) -> None:
    p = tasks.add_parser("mnist", help="the MNIST MLP (784-512-256-10)",
                         description="Train the course's MNIST MLP. Flags override the recipe.")
    p.set_defaults(run=_train_mnist, parser=p)
    p.add_argument("--recipe", choices=["default", "course"], default="default",
                   help="default: tuned to reach >=0.98; course: the course's exact settings")
    p.add_argument("--data-dir", help="an existing folder with the four IDX files in MNIST's "
                   "layout (any such dataset; missing files are downloaded into it); default "
                   "jaxnet's folder $JAXNET_DATA_DIR or ~/.cache/jaxnet/mnist (official MNIST, "
                   "downloaded if missing)")
    p.add_argument("--source", choices=["idx", "tfds"], default="idx",
                   help="data backend (tfds needs pip install 'jaxnet[tfds]')")
    p.add_argument("--epochs", type=_POSITIVE_INT)
    p.add_argument("--batch-size", type=_POSITIVE_INT,
                   help="at most the number of training images")
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--lr", type=_POSITIVE_FLOAT, help="(peak) learning rate")
    p.add_argument("--momentum", type=float, help="SGD momentum in [0, 1)")
    p.add_argument("--schedule", choices=["constant", "warmup_cosine"])
    p.add_argument("--hidden", type=_hidden, help="hidden layer sizes, e.g. 512,256")
    p.add_argument("--dropout", type=_PROBABILITY,
                   help="nn.Dropout(p) after every hidden activation (default 0: none)")
    p.add_argument("--seed", type=_SEED, help=f"an int in [0, {_SEED_LIMIT - 1}]")
    p.add_argument("--val-split", type=_NON_NEGATIVE_INT,
                   help="training images held out for validation (default recipe 5000, "
                        "course 0)")
    p.add_argument("--checkpoint-dir", help="save the full state after every epoch here "
                   "(locked while the run writes)")
    p.add_argument("--keep", type=_POSITIVE_INT, default=3, help="checkpoints to keep (3)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest intact checkpoint in --checkpoint-dir")
    p.add_argument("--no-check-finite", dest="check_finite", action="store_false",
                   help="do not stop on NaN/Inf losses or gradients")
    p.add_argument("--plot", help="save the loss and accuracy curves to this image file "
                   "(.png by default; needs matplotlib)")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --json/--plot to replace existing files")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    g = p.add_argument_group("data parallel over several devices or processes (jaxnet.parallel); "
                             "process 0 alone prints and writes --json, --plot and checkpoints")
    g.add_argument("--devices", type=_POSITIVE_INT, metavar="N",
                   help="train on N devices, all processes together (default: 1, or every "
                        "device of every process with --num-processes); --batch-size is the "
                        "global batch, a multiple of N. On CPU the CPU is split into N devices "
                        "(for testing; not faster)")
    g.add_argument("--coordinator-address", metavar="HOST:PORT",
                   help="process 0's host and a free port, the same in every process")
    g.add_argument("--num-processes", type=_POSITIVE_INT, metavar="P",
                   help="how many processes train together (one per host, or per GPU)")
    g.add_argument("--process-id", type=_NON_NEGATIVE_INT, metavar="K",
                   help="this process's index, 0 to P-1")
    g.add_argument("--init-timeout", type=_POSITIVE_INT, default=300, metavar="SECONDS",
                   help="how long to wait for every process to connect (300)")


# --------------------------------------------------------------------------- checks before training


def _output_path(flag: str, value: str, overwrite: bool) -> Path:
    """The file ``--json``/``--plot`` will write, checked now: a writable folder, a file
    name that fits, not a folder, never an existing file without ``--overwrite``."""
    if not value:
        raise _FlagError(f"{flag}: expected a file path, got ''")
    path = Path(os.path.expanduser(value))
    parent = path.parent
    try:
        if path.is_dir():
            raise _FlagError(f"{flag}: {value} is a folder; expected a file path")
        if os.path.lexists(path):
            if not overwrite:
                raise _FlagError(f"{flag}: {value} already exists; pass --overwrite to replace it")
            if not path.is_file():
                raise _FlagError(f"{flag}: {value} exists and is not a regular file; refusing "
                                 f"to replace it")
        if not parent.is_dir():
            raise _FlagError(f"{flag}: cannot write {value}: {parent} is not a writable folder")
        name_max = os.pathconf(parent, "PC_NAME_MAX")
        if len(os.fsencode(path.name)) > name_max:
            raise _FlagError(f"{flag}: cannot write {value}: the file name is "
                             f"{len(os.fsencode(path.name))} bytes, more than the {name_max} "
                             f"this file system allows")
        fd, probe = tempfile.mkstemp(prefix=".jaxnet-out-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _FlagError(f"{flag}: cannot write {value}: {parent} is not a writable folder "
                         f"({e.strerror or e})") from None
    return path


def _plot_format(value: str) -> str:
    """The image format of ``--plot`` (from its suffix), checked with matplotlib now."""
    try:
        import matplotlib
    except ImportError as e:
        raise _FlagError(f"--plot: needs matplotlib, which cannot be imported ({e}); "
                         f"pip install matplotlib, or leave out --plot") from None
    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(value).suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise _FlagError(f"--plot: cannot save a .{fmt} image; expected one of "
                         f"{', '.join('.' + k for k in sorted(supported))}")
    return fmt


def _check_before_training(args) -> dict[str, Path]:
    """Fail now, not after training, on anything the flags alone can tell."""
    outputs = {}
    for flag in ("json", "plot"):
        value = getattr(args, flag)
        if value is not None:
            outputs[flag] = _output_path(f"--{flag}", value, args.overwrite)
    if "plot" in outputs:
        args.plot_format = _plot_format(args.plot)
    if len(outputs) == 2 and os.path.realpath(outputs["json"]) == \
            os.path.realpath(outputs["plot"]):
        raise _FlagError(f"--json and --plot: both name {args.json}; give them different files")
    if args.data_dir is not None:
        data_dir = Path(os.path.expanduser(args.data_dir))
        if not data_dir.exists():
            raise _FlagError(f"--data-dir: {args.data_dir} does not exist; expected a folder "
                             f"with the four IDX files (jaxnet creates only its own data folder)")
        if not data_dir.is_dir():
            raise _FlagError(f"--data-dir: {args.data_dir} is not a folder")
    if args.resume and not args.checkpoint_dir:
        raise _FlagError("--resume: needs --checkpoint-dir")
    if args.checkpoint_dir is not None:
        from . import checkpoint

        try:
            checkpoint.check_new_run(args.checkpoint_dir, resume=args.resume,
                                     name="--checkpoint-dir", resume_name="--resume")
        except checkpoint.CheckpointError as e:
            raise _FlagError(str(e)) from None
    return outputs


def _memory_bytes() -> int | None:
    """Memory of the device XLA runs on: its limit on a GPU, the host's RAM on CPU."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # not every backend reports it
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits(config, n_images: int) -> None:
    """The split, the batch and the model fit the data and the memory (before training)."""
    if config.val_split >= n_images:
        raise _FlagError(f"--val-split: expected fewer than the {n_images} training images, "
                         f"got {config.val_split}")
    n_train = n_images - config.val_split
    if config.batch_size > n_train:
        held = f" ({n_images} minus --val-split {config.val_split})" if config.val_split else ""
        raise _FlagError(f"--batch-size: expected at most the {n_train} training images{held}, "
                         f"got {config.batch_size}")
    sizes = [784, *config.hidden, 10]
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    # float32 parameters, gradients and two Adam moments, plus a batch's activations
    need = 4 * (4 * params + 3 * config.batch_size * sum(sizes))
    have = _memory_bytes()
    if have is not None and need > have:
        raise _FlagError(f"--hidden: a {'-'.join(map(str, sizes))} MLP needs about "
                         f"{need / 1e9:.1f} GB for its parameters, gradients and optimizer "
                         f"state, more than the {have / 1e9:.1f} GB of memory here; choose "
                         f"smaller layers")


# --------------------------------------------------------------------------- outputs


def _write_atomic(flag: str, value: str, path: Path, overwrite: bool,
                  write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file in the same folder, then rename into place: the file
    is complete or absent, never 0 bytes; never replaces a file without ``--overwrite``."""
    fd, tmp = tempfile.mkstemp(prefix=".jaxnet-out-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile
            except FileExistsError:
                raise _FlagError(f"{flag}: {value} appeared during training; not replaced "
                                 f"(pass --overwrite to replace it)") from None
            except OSError:  # a file system without hard links
                if os.path.lexists(path):
                    raise _FlagError(f"{flag}: {value} appeared during training; not replaced "
                                     f"(pass --overwrite to replace it)") from None
                os.replace(tmp, path)
    except OSError as e:
        raise OSError(f"{flag}: could not write {value}: {e.strerror or e}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _plot(history: list[dict], f: BinaryIO, fmt: str) -> None:
    """Loss curves (train, and validation when the history has it) and validation accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in history]
    has_val = any("val_loss" in e for e in history)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(9 if has_val else 4.5, 3.5),
                             squeeze=False)
    ax1 = axes[0][0]
    ax1.plot(epochs, [e["train_loss"] for e in history], "o-", label="train")
    if has_val:
        val = [(e["epoch"], e["val_loss"], e.get("val_accuracy")) for e in history
               if "val_loss" in e]
        ax1.plot([v[0] for v in val], [v[1] for v in val], "o-", label="validation")
        ax2 = axes[0][1]
        ax2.plot([v[0] for v in val if v[2] is not None],
                 [v[2] for v in val if v[2] is not None], "o-", color="C2")
        ax2.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(f, format=fmt, dpi=100)
    plt.close(fig)


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --------------------------------------------------------------------------- the command


_FLAGS = {"epochs", "batch_size", "optimizer", "lr", "momentum", "schedule", "hidden", "seed",
          "val_split", "devices", "coordinator_address", "num_processes", "process_id"}


def _as_flag_error(e: Exception) -> _FlagError:
    """``momentum: expected …`` from the configuration, as ``--momentum: expected …``."""
    field, sep, rest = str(e).partition(":")
    if sep and field in _FLAGS:
        return _FlagError(f"--{field.replace('_', '-')}:{rest}")
    return _FlagError(str(e))


def _seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux), so "time to result" counts imports."""
    try:
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _start_time() -> float:
    """``perf_counter`` at which this run started: the process's start for the command's
    first run in a process, the call itself for later in-process runs (tests)."""
    global _calls
    _calls += 1
    if _calls > 1:
        return time.perf_counter()
    since = _seconds_since_process_start()
    return time.perf_counter() - since if since is not None else _IMPORTED


def _train_mnist(args) -> int:
    from . import devices, parallel
    from .mnist import RECIPES, load_data, train_mnist

    updates = dict(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                   lr=args.lr, momentum=args.momentum, schedule=args.schedule,
                   hidden=args.hidden, seed=args.seed, val_split=args.val_split,
                   dropout=args.dropout)
    try:
        config = RECIPES[args.recipe].with_updates(**updates)
        mesh = parallel.setup_mesh(args.devices, coordinator_address=args.coordinator_address,
                                   num_processes=args.num_processes, process_id=args.process_id,
                                   timeout_s=args.init_timeout)
        if mesh is not None:
            parallel.check_batch_size(config.batch_size, mesh)
    except (ValueError, TypeError) as e:
        raise _as_flag_error(e) from None
    if not parallel.is_primary():  # process 0 checks, prints and writes the outputs
        with parallel.peer_failures():
            train_mnist(config, data=load_data(args.data_dir, args.source), mesh=mesh,
                        checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                        check_finite=args.check_finite, progress=False, log=None)
        return 0
    outputs = _check_before_training(args)
    print(f"jaxnet: MNIST MLP 784-{'-'.join(map(str, config.hidden))}-10, recipe "
          f"{args.recipe}: {config.optimizer} lr {config.lr} ({config.schedule}), batch "
          f"{config.batch_size}, {config.epochs} epochs, validation split {config.val_split}, "
          f"seed {config.seed}; {devices.describe()}"
          + ("" if mesh is None else f"; {parallel.describe(mesh)}"), flush=True)
    data = load_data(args.data_dir, args.source)
    _check_fits(config, len(data[0][0]))
    with parallel.peer_failures():
        result = train_mnist(config, data=data, checkpoint_dir=args.checkpoint_dir,
                             resume=args.resume, keep=args.keep, check_finite=args.check_finite,
                             progress=args.progress, log=lambda line: print(line, flush=True),
                             mesh=mesh)
    elapsed = time.perf_counter() - args.start
    print(f"test accuracy: {result['test_accuracy']:.4f}", flush=True)
    train_s = result["train_seconds"]
    total_s = result.get("train_seconds_total", train_s)
    resumed = any(e.get("run", 0) != result["history"][-1].get("run", 0)
                  for e in result["history"])
    over_all = (f" ({total_s:.2f}s over all {len(result['history'])} epochs, before the resume "
                f"included)" if resumed else "")
    print(f"compile {result['compile_seconds']:.2f}s, training {train_s:.2f}s in this run"
          f"{over_all}, time to result {elapsed:.2f}s; "
          f"params fingerprint {result['params_fingerprint'][:16]}", flush=True)
    if "json" in outputs:
        keys = ("test_accuracy", "test_loss", "val_accuracy", "epoch_seconds", "compile_seconds",
                "train_seconds", "train_seconds_total", "params_fingerprint", "config",
                "devices", "history")
        out = {k: result[k] for k in keys if k in result}
        out["time_to_result_seconds"] = elapsed
        text = json.dumps(out, indent=1, default=_json_value) + "\n"
        _write_atomic("--json", args.json, outputs["json"], args.overwrite,
                      lambda f: f.write(text.encode()))
        print(f"wrote {args.json}")
    if "plot" in outputs:
        _write_atomic("--plot", args.plot, outputs["plot"], args.overwrite,
                      lambda f: _plot(result["history"], f, args.plot_format))
        print(f"wrote {args.plot}")
    return 0


# --------------------------------------------------------------------------- jaxnet convert

_CONVERT_CONFIG_FLAGS = ("recipe", "hidden", "epochs", "batch_size", "optimizer", "lr",
                         "momentum", "schedule", "seed", "val_split")


def _add_convert(commands) -> None:
    """``jaxnet convert SOURCE --to DESTINATION``: PyTorch state dicts <-> checkpoints."""
    p = commands.add_parser(
        "convert", help="a PyTorch state dict to a jaxnet checkpoint, and back",
        description="Convert the MNIST MLP between a PyTorch state dict (.pt/.pth/.bin, read "
        "only with torch.load(weights_only=True); or .safetensors, no PyTorch needed) and a "
        "jaxnet train mnist checkpoint folder, or between the two file formats. A converted "
        "checkpoint holds the weights and a fresh optimizer state (a state dict has none) at "
        "epoch --trained-epochs: continue it with jaxnet train mnist --checkpoint-dir DIR "
        "--resume and the same settings.")
    p.set_defaults(run=_convert, parser=p)
    p.add_argument("source", help="model.pt|.pth|.bin|.safetensors, or a checkpoint folder")
    p.add_argument("--to", dest="destination", required=True, metavar="DESTINATION",
                   help="a new or empty checkpoint folder, or a .safetensors/.pt file")
    g = p.add_argument_group("the model and its training settings, as for jaxnet train mnist "
                             "(a checkpoint source has them in its saved config)")
    g.add_argument("--recipe", choices=["default", "course"],
                   help="default: logits out; course: log-softmax out (NLL loss)")
    g.add_argument("--hidden", type=_hidden, help="hidden layer sizes, e.g. 512,256")
    g.add_argument("--epochs", type=_POSITIVE_INT)
    g.add_argument("--batch-size", type=_POSITIVE_INT)
    g.add_argument("--optimizer", choices=["adam", "sgd"])
    g.add_argument("--lr", type=_POSITIVE_FLOAT)
    g.add_argument("--momentum", type=float)
    g.add_argument("--schedule", choices=["constant", "warmup_cosine"])
    g.add_argument("--seed", type=_SEED)
    g.add_argument("--val-split", type=_NON_NEGATIVE_INT)
    p.add_argument("--trained-epochs", type=_NON_NEGATIVE_INT, default=0, metavar="N",
                   help="record the weights as N epochs trained (default 0); --resume with "
                   "--epochs N then only evaluates them")
    p.add_argument("--step", type=_NON_NEGATIVE_INT,
                   help="which checkpoint of a source folder (default the newest)")
    p.add_argument("--key", help="the state dict's entry in a .pt training-checkpoint dict, "
                   "e.g. model_state_dict")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --to file")


def _convert(args) -> int:
    from . import interop

    given = [f for f in _CONVERT_CONFIG_FLAGS if getattr(args, f) is not None]
    config = None
    if given:
        from .mnist import RECIPES

        try:
            config = RECIPES[args.recipe or "default"].with_updates(
                **{f: getattr(args, f) for f in given if f != "recipe"})
        except (ValueError, TypeError) as e:
            raise _as_flag_error(e) from None
    result = interop.convert(args.source, args.destination, config=config,
                             trained_epochs=args.trained_epochs, step=args.step, key=args.key,
                             overwrite=args.overwrite)
    what = f"{result['arrays']} arrays, {result['params']:,} values"
    if result["config"] is not None:
        what = f"MLP 784-{'-'.join(map(str, result['config'].hidden))}-10, {what}"
    print(f"converted {args.source} -> {args.destination} ({what})")
    if result["direction"] == "file->checkpoint":
        c = result["config"]
        flags = [f"--recipe {args.recipe or 'default'}", f"--epochs {c.epochs}"]
        flags += [f"--{f.replace('_', '-')} "
                  + (",".join(map(str, v)) if isinstance(v := getattr(args, f), tuple) else str(v))
                  for f in given if f not in ("recipe", "epochs")]
        evaluate = (f" (or, with --epochs {result['epoch']}, only evaluate)"
                    if result["epoch"] else "")
        print(f"epoch {result['epoch']}, fresh optimizer state; continue{evaluate} with: jaxnet "
              f"train mnist --checkpoint-dir {args.destination} --resume {' '.join(flags)}")
    return 0



# --------------------------------------------------------------------------- main


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n")).strip() or type(e).__name__


def _install_signal_handlers(state: dict) -> dict:
    """SIGINT raises ``KeyboardInterrupt`` and SIGTERM ``_Terminated``, once: a second
    signal while the first is being handled is ignored (no traceback from a double
    Ctrl-C); a third ends the process at once."""

    def handler(signum, frame):
        state["signals"] += 1
        if state["signals"] == 1:
            raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if state["signals"] >= 3:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return previous


def _route_logs() -> Callable[[], None]:
    """jaxnet's notes and warnings (a non-MNIST data folder, a stale lock recovered) go to
    stdout as ``jaxnet: …`` lines; returns the function that undoes it."""
    log = logging.getLogger("jaxnet")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("jaxnet: %(message)s"))
    old = (log.propagate, log.level)
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)

    def undo():
        log.removeHandler(handler)
        log.propagate, log.level = old

    return undo


def _main(argv: list[str] | None, state: dict) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    state["args"] = args
    args.start = state["start"]
    from .checkpoint import CheckpointError
    from .train import NonFiniteError

    try:
        return args.run(args)
    except _FlagError as e:
        print(f"jaxnet: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (CheckpointError, NonFiniteError, OSError, ValueError, ImportError) as e:
        # One line, no traceback: these are the user's to fix, and the message says how.
        print(f"jaxnet: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except MemoryError:
        print("jaxnet: error: out of memory; choose a smaller --batch-size or --hidden",
              file=sys.stderr)
        return 1
    except RuntimeError as e:  # XLA's errors; only running out of memory is the user's
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        what = str(e).split("RESOURCE_EXHAUSTED:", 1)[-1].strip().splitlines()[0].rstrip(".")
        print(f"jaxnet: error: out of memory on {_device_name()}: {what[:200]}; choose a "
              f"smaller --batch-size or --hidden", file=sys.stderr)
        return 1


def _device_name() -> str:
    import jax

    return str(jax.devices()[0].device_kind)


def main(argv: list[str] | None = None) -> int:
    """Run the ``jaxnet`` command; returns the exit status."""
    state: dict[str, Any] = {"signals": 0, "args": None, "start": _start_time()}
    previous: dict = {}
    undo_logs = None
    try:
        previous = _install_signal_handlers(state)
        undo_logs = _route_logs()
        from .parallel import end_process

        return end_process(_main(argv, state))  # a failed process of several ends at once
    except KeyboardInterrupt as e:
        state["signals"] = max(state["signals"], 1)  # from here on, a second signal is ignored
        terminated = isinstance(e, _Terminated)
        args = state["args"]
        hint = ""
        if args is not None and getattr(args, "checkpoint_dir", None):
            hint = (f"; the checkpoints in {args.checkpoint_dir} are intact: add --resume to "
                    f"continue")
        print(f"jaxnet: {'terminated (SIGTERM)' if terminated else 'interrupted (SIGINT)'}{hint}",
              file=sys.stderr, flush=True)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if undo_logs is not None:
            undo_logs()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
