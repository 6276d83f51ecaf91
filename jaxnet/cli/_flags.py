"""The ``jaxnet`` command's flags: the parser, the flag types, and ``FlagError``.

The MNIST settings' flags are generated from ``MnistConfig``'s fields (their
choices and help live there), once for ``train mnist`` and once for
``convert``. Nothing here imports JAX at module level: ``main`` installs its
Ctrl-C handler first, and ``build_parser`` loads ``jaxnet.mnist`` when called.
"""

from __future__ import annotations

import argparse

from .._checks import SEED_LIMIT

_INT32_MAX = 2**31 - 1  # the step counter and XLA's sizes
_MAX_TIMEOUT = 86_400  # one day: jax.distributed takes an int of seconds
_MAX_HIDDEN_LAYERS = 100  # deeper MLPs overflow XLA's compiler stack (a crash, not an error)
# The process-group flags, named like their parallel.setup_mesh arguments.
_PARALLEL_FLAGS = ("devices", "coordinator_address", "num_processes", "process_id")


class FlagError(Exception):
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
    if max(sizes) > _INT32_MAX:
        raise argparse.ArgumentTypeError(f"expected layer sizes in [1, {_INT32_MAX}], got "
                                         f"{text!r}")
    if len(sizes) > _MAX_HIDDEN_LAYERS:
        raise argparse.ArgumentTypeError(f"expected at most {_MAX_HIDDEN_LAYERS} hidden "
                                         f"layers, got {len(sizes)}")
    return sizes


def _compile_cache(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder or off, got {text!r}")
    return text


def _number(kind, *, minimum=None, above=None, below=None, maximum=None,
            what: str | None = None):
    """An argparse type: ``kind`` (int/float) within bounds, with a message naming both."""
    article = "an" if kind is int else "a"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {article} {kind.__name__}, got {text!r}") from None
        if (minimum is not None and value < minimum) or (above is not None and not value > above) \
                or (below is not None and not value < below) \
                or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


POSITIVE_INT = _number(int, above=0, what="a positive int")
_INT32 = _number(int, above=0, maximum=_INT32_MAX, what=f"an int in [1, {_INT32_MAX}]")
_EPOCHS = _number(int, above=0, maximum=_INT32_MAX,
                  what=f"an int in [1, {_INT32_MAX}] (the step counter is int32)")
_TIMEOUT = _number(int, above=0, maximum=_MAX_TIMEOUT,
                   what=f"seconds in [1, {_MAX_TIMEOUT}] (one day)")
_COUNT = _number(int, above=0, maximum=65_536, what="an int in [1, 65536]")
_INDEX = _number(int, minimum=0, maximum=65_535, what="an int in [0, 65535]")
_POSITIVE_FLOAT = _number(float, above=0, what="a positive float")
NON_NEGATIVE_INT = _number(int, minimum=0, what="a non-negative int")
_PROBABILITY = _number(float, minimum=0, below=1, what="a probability in [0, 1)")
_SEED = _number(int, minimum=0, below=SEED_LIMIT,
                what=f"an int in [0, {SEED_LIMIT - 1}] (jax.random.PRNGKey keeps 32 bits)")

# The argparse type of each MnistConfig field that is a flag (a field with
# "choices" takes them as strings); the flags' order is each command's own.
_TYPES = {"epochs": _EPOCHS, "batch_size": _INT32, "optimizer": None,
          "lr": _POSITIVE_FLOAT, "momentum": float, "schedule": None, "hidden": _hidden,
          "dropout": _PROBABILITY, "seed": _SEED, "val_split": NON_NEGATIVE_INT,
          "precision": None}
TRAIN_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "schedule", "hidden",
                "dropout", "seed", "val_split", "precision")
CONVERT_FIELDS = ("hidden", "epochs", "batch_size", "optimizer", "lr", "momentum",
                  "schedule", "seed", "val_split")


def flag(field: str) -> str:
    """``--batch-size`` for the field ``batch_size``."""
    return "--" + field.replace("_", "-")


def add_config_flags(group, fields, described) -> None:
    """One flag per ``MnistConfig`` field in ``fields`` (default ``None``: the recipe's).

    Args:
      group: an argparse parser or argument group.
      fields: the field names, in the order ``--help`` lists them.
      described: the fields whose flag shows the field's ``help``.
    """
    import dataclasses

    from ..mnist import MnistConfig

    meta = {f.name: f.metadata for f in dataclasses.fields(MnistConfig)}
    for name in fields:
        kwargs = {}
        if _TYPES[name] is not None:
            kwargs["type"] = _TYPES[name]
        if "choices" in meta[name]:
            kwargs["choices"] = list(meta[name]["choices"])
        if name in described and "help" in meta[name]:
            kwargs["help"] = meta[name]["help"]
        group.add_argument(flag(name), **kwargs)


def as_flag_error(e: Exception) -> FlagError:
    """``momentum: expected …`` from the configuration, as ``--momentum: expected …``."""
    field, sep, rest = str(e).partition(":")
    if sep and (field in _TYPES or field in _PARALLEL_FLAGS):
        return FlagError(f"{flag(field)}:{rest}")
    return FlagError(str(e))


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    """``jaxnet <command> …``: one ``_add_<command>`` function per subcommand."""
    parser = _Parser(prog="jaxnet", description="jaxnet: PyTorch's beginner workflow as pure "
                     "JAX functions.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands)
    _add_convert(commands)
    # Listed for --help only: main() hands "jaxnet launch ..." to _launch before parsing.
    commands.add_parser("launch", add_help=False, help="start N local processes of a "
                        "command as one multi-process run: jaxnet launch --nproc N -- COMMAND")
    return parser


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a model")
    tasks = train.add_subparsers(dest="task", required=True, parser_class=_Parser)
    _add_train_mnist(tasks)


def _recipes() -> list[str]:
    from ..mnist import RECIPES

    return list(RECIPES)


def _add_train_mnist(tasks) -> None:
    p = tasks.add_parser("mnist", help="the MNIST MLP (784-512-256-10)",
                         description="Train the course's MNIST MLP. Flags override the recipe.")
    p.set_defaults(parser=p)
    p.add_argument("--recipe", choices=_recipes(), default="default",
                   help="default: tuned to reach >=0.98; course: the course's exact settings")
    p.add_argument("--data-dir", help="an existing folder with the four IDX files in MNIST's "
                   "layout (any such dataset; missing files are downloaded into it); default "
                   "jaxnet's folder $JAXNET_DATA_DIR or ~/.cache/jaxnet/mnist (official MNIST, "
                   "downloaded if missing)")
    p.add_argument("--source", choices=["idx", "tfds"], default="idx",
                   help="data backend (tfds needs pip install 'jaxnet-course[tfds]')")
    add_config_flags(p, TRAIN_FIELDS, described=TRAIN_FIELDS)
    p.add_argument("--checkpoint-dir", help="save the full state after every epoch here "
                   "(locked while the run writes)")
    p.add_argument("--keep", type=POSITIVE_INT, default=3, help="checkpoints to keep (3)")
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
    p.add_argument("--compile-cache", metavar="PATH|off", type=_compile_cache,
                   help="keep the compiled programs in this folder, so that the next run "
                   "starts sooner (results are identical); default $JAXNET_COMPILATION_CACHE, "
                   "else $XDG_CACHE_HOME/jaxnet/xla or ~/.cache/jaxnet/xla, at most 1 GiB "
                   "($JAXNET_COMPILATION_CACHE_MAX_BYTES); off: compile every run")
    g = p.add_argument_group("data parallel over several devices or processes (jaxnet.parallel); "
                             "process 0 alone prints and writes --json, --plot and checkpoints")
    g.add_argument("--devices", type=_COUNT, metavar="N",
                   help="train on N devices, all processes together (default: 1, or every "
                        "device of every process with --num-processes); --batch-size is the "
                        "global batch, a multiple of N. On CPU the CPU is split into N devices "
                        "(for testing; not faster)")
    g.add_argument("--cluster", action="store_true",
                   help="join the processes that Slurm (srun), Open MPI (mpirun) or "
                        "Kubernetes started: jax.distributed detects the coordinator, the "
                        "number of processes and this process's id. Under jaxnet launch no "
                        "flag is needed")
    g.add_argument("--coordinator-address", metavar="HOST:PORT",
                   help="process 0's host and a free port, the same in every process")
    g.add_argument("--num-processes", type=_COUNT, metavar="P",
                   help="how many processes train together (one per host, or per GPU)")
    g.add_argument("--process-id", type=_INDEX, metavar="K",
                   help="this process's index, 0 to P-1")
    g.add_argument("--init-timeout", type=_TIMEOUT, default=300, metavar="SECONDS",
                   help="how long to wait for every process to connect (300)")


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
    p.set_defaults(parser=p)
    p.add_argument("source", help="model.pt|.pth|.bin|.safetensors, or a checkpoint folder")
    p.add_argument("--to", dest="destination", required=True, metavar="DESTINATION",
                   help="a new or empty checkpoint folder, or a .safetensors/.pt file")
    g = p.add_argument_group("the model and its training settings, as for jaxnet train mnist "
                             "(a checkpoint source has them in its saved config)")
    g.add_argument("--recipe", choices=_recipes(),
                   help="default: logits out; course: log-softmax out (NLL loss)")
    add_config_flags(g, CONVERT_FIELDS, described=("hidden",))
    p.add_argument("--trained-epochs", default=0, metavar="N", type=_number(
        int, minimum=0, maximum=_INT32_MAX, what=f"an int in [0, {_INT32_MAX}]"),
                   help="record the weights as N epochs trained (default 0); --resume with "
                   "--epochs N then only evaluates them")
    p.add_argument("--step", type=NON_NEGATIVE_INT,
                   help="which checkpoint of a source folder (default the newest)")
    p.add_argument("--key", help="the state dict's entry in a .pt training-checkpoint dict, "
                   "e.g. model_state_dict")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --to file")
