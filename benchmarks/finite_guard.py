"""Cost of the NaN/Inf guard on the fast path: ``fit(check_finite=True)`` vs ``False``.

Same MNIST model and batch size as the course (batch 64, Adam), guard on /
off blocks alternating in one process (and in which goes first) so noise hits
both; reports the median epoch time
of each and their ratio (the guard should cost no more than a few percent).

Run:  python benchmarks/finite_guard.py [--rounds 3] [--quick]   (also part of nox -s bench)
"""

import argparse
import json
import os
import statistics
from pathlib import Path

import optax

from jaxnet import losses, mnist, nn
from jaxnet.train import TrainState, fit


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per block")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 1 round of 2-epoch blocks (not a measurement)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 1, 2

    data_dir = os.environ.get("JAXNET_DATA_DIR",
                              Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
    (x, y), _ = mnist.load_data(data_dir)
    model_apply, params, model_state = nn.split(nn.MLP(784, [512, 256], 10, rngs=0))

    def apply(p, s, pixels, *, train=False, rng=None):  # uint8 pixels, normalised on device
        return model_apply(p, s, mnist.normalize(pixels), train=train, rng=rng)

    optimizer = optax.adam(1e-3)
    times = {True: [], False: []}
    for r in range(args.rounds):
        for guard in ((True, False) if r % 2 == 0 else (False, True)):  # alternate the order
            state = TrainState.create(params, optimizer, model_state=model_state)
            _, history = fit(state, apply, losses.cross_entropy, optimizer, (x, y),
                             epochs=args.epochs, batch_size=64, seed=r, check_finite=guard,
                             progress=False, log=None)
            times[guard] += [e["train_seconds"] for e in history[1:]]  # steady state
            print(f"round {r + 1} guard {'on ' if guard else 'off'}: " +
                  " ".join(f"{e['train_seconds']:.2f}" for e in history) + " s", flush=True)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"\nmedian epoch: guard on {on:.3f} s, off {off:.3f} s, ratio {on / off:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"guard_on_s": on, "guard_off_s": off,
                                               "ratio": on / off}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
