"""jaxnet: what ``jaxnet train mnist --recipe course`` runs (``mnist.train_mnist``).

A whole epoch is one jitted ``lax.scan`` over device-resident uint8 pixels,
normalised inside the step; the NaN guard is on, as in the CLI. The order is
``default_rng([seed, epoch])``; the last batch is padded and masked.

Run:  python benchmarks/peers/jaxnet_scan.py [--quick] [--epochs 5] [--batch-size 64]
"""

from __future__ import annotations

import _common


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    import jax

    from jaxnet import mnist

    _common.emit(versions={"jax": jax.__version__})
    config = mnist.RECIPES["course"].with_updates(
        seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        hidden=tuple(args.hidden))
    result = mnist.train_mnist(config, data_dir=_common.data_dir(args.data_dir),
                               progress=False, log=None)
    for i, seconds in enumerate(result["epoch_seconds"]):
        _common.emit(epoch=i + 1, seconds=seconds)
    _common.emit(compile_seconds=result["compile_seconds"])
    _common.emit(test_accuracy=result["test_accuracy"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
