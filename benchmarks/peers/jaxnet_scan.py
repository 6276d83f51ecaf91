"""jaxnet: what ``jaxnet train mnist --recipe course`` runs (``mnist.train_mnist``).

A whole epoch is one jitted ``lax.scan`` over device-resident uint8 pixels,
normalised inside the step; the NaN guard is on, as in the CLI. The order is
``default_rng([seed, epoch])``; the last batch is padded and masked.

``--precision bf16``: the mixed-precision policy (``MnistConfig.precision``,
the CLI's ``--precision``). Where this jaxnet has no such policy the script
prints ``{"error": "precision API not available"}`` and exits with status 4.
The compile cache is whatever ``JAXNET_COMPILATION_CACHE`` says (the
benchmark points it at an empty folder for a cold start, the same folder
again for a warm one).

Run:  python benchmarks/peers/jaxnet_scan.py [--quick] [--epochs 5] [--batch-size 64]
      [--precision float32|bf16]
"""

from __future__ import annotations

import _common

NO_PRECISION = 4  # exit status: this jaxnet has no precision policy


def _flags(parser) -> None:
    parser.add_argument("--precision", default="float32",
                        help="float32 (default) or bf16 (the mixed-precision policy)")


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv, extra=_flags)
    import dataclasses

    import jax

    from jaxnet import mnist

    _common.emit(versions={"jax": jax.__version__})
    changes = {"seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size,
               "lr": args.lr, "hidden": tuple(args.hidden)}
    if args.precision != "float32":
        fields = {f.name for f in dataclasses.fields(mnist.MnistConfig)}
        if "precision" not in fields:
            _common.emit(error="precision API not available")
            return NO_PRECISION
        changes["precision"] = args.precision
    config = mnist.RECIPES["course"].with_updates(**changes)
    result = mnist.train_mnist(config, data_dir=_common.data_dir(args.data_dir),
                               progress=False, log=None)
    for i, seconds in enumerate(result["epoch_seconds"]):
        _common.emit(epoch=i + 1, seconds=seconds)
    _common.emit(compile_seconds=result["compile_seconds"],
                 compile_cache_dir=jax.config.jax_compilation_cache_dir)
    _common.emit(test_accuracy=result["test_accuracy"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
