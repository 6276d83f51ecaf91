"""Keras 3 on JAX in its documented idiom: ``Sequential`` of ``Dense``, ``compile``, ``fit``.

``KERAS_BACKEND=jax`` (set here unless already set). ``fit(shuffle=True)``
reshuffles every epoch with numpy's global generator, seeded by
``keras.utils.set_random_seed``; the last batch is short. Dense layers get
PyTorch's initialisation (``RandomUniform(-1/sqrt(fan_in), 1/sqrt(fan_in))``
for kernel and bias) and Adam PyTorch's epsilon (1e-8; Keras's default is
1e-7); the loss is ``SparseCategoricalCrossentropy(from_logits=True)``
(= log-softmax + NLL). No training metrics are compiled in (no other peer
computes any); the test accuracy comes from ``predict``. Epoch times come
from a callback.

``--steps-per-execution K``: ``compile(steps_per_execution=K)``, Keras's
documented speed knob (K steps per compiled call); ``0`` means the epoch's
steps (``ceil(60000 / batch)``, 938 at batch 64), the whole epoch per call.

Run:  python benchmarks/peers/keras_fit.py [--quick] [--epochs 5] [--batch-size 64]
      [--steps-per-execution 0]
"""

from __future__ import annotations

import os
import time

import _common


def _flags(parser) -> None:
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="compile(steps_per_execution=...); 0: the epoch's steps (1)")


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv, extra=_flags)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    _common.emit(versions={"keras": keras.__version__, "backend": keras.backend.backend()})
    keras.utils.set_random_seed(args.seed)

    def dense(fan_in, units, activation=None):
        bound = _common.torch_bound(fan_in)
        uniform = keras.initializers.RandomUniform
        return keras.layers.Dense(units, activation=activation,
                                  kernel_initializer=uniform(-bound, bound),
                                  bias_initializer=uniform(-bound, bound))

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # the epoch's last step has finished
            _common.emit(epoch=epoch + 1, seconds=time.perf_counter() - self.t0)

    (x, y), (x_test, y_test) = _common.load_mnist(args.data_dir)
    sizes = [784, *args.hidden]
    hidden = [dense(i, o, "relu") for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    model = keras.Sequential([keras.Input(shape=(784,)), *hidden, dense(sizes[-1], 10)])
    steps = args.steps_per_execution or -(-len(x) // args.batch_size)
    _common.emit(steps_per_execution=steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=args.lr, epsilon=1e-8),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps)
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=[EpochTimes()])
    predicted = model.predict(x_test, batch_size=len(x_test), verbose=0).argmax(axis=1)
    _common.emit(test_accuracy=float((predicted == y_test).mean()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
