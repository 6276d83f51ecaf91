"""Predict one MNIST test digit with the model ``jaxnet train mnist`` trained, in a fresh process.

The course's "load the saved model and predict": rebuild the architecture,
load the trained weights into it (``torch.load`` + ``load_state_dict``: here
one call, ``jaxnet.load``), run it in evaluation mode, read the class and its
probability. The run folder holds the settings it was trained with, so the
model is rebuilt from them rather than from flags that could disagree.

Run:  jaxnet train mnist --checkpoint-dir runs/mnist
      python examples/predict.py runs/mnist --index 0 [--data-dir ../shared/data/mnist]
"""

import argparse
import dataclasses

import jax

import jaxnet
from jaxnet import checkpoint, mnist, nn


def config_of_run(run_dir) -> mnist.MnistConfig:
    """The ``MnistConfig`` a ``jaxnet train mnist`` run saved with its checkpoints."""
    saved = checkpoint.load_metadata(run_dir)["config"]
    fields = {f.name for f in dataclasses.fields(mnist.MnistConfig)}
    values = {k: v for k, v in saved.items() if k in fields}  # not schedule_steps
    return mnist.MnistConfig(**{**values, "hidden": tuple(values["hidden"])})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the --checkpoint-dir of jaxnet train mnist")
    parser.add_argument("--index", type=int, default=0, help="which test image (0-9999)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST IDX files (default: $JAXNET_DATA_DIR)")
    args = parser.parse_args(argv)

    # 1. The architecture it was trained with, then the trained weights in it.
    model = jaxnet.load(args.run_dir, into=mnist.build_model(config_of_run(args.run_dir)))

    # 2. One test image, normalised as in training (ToTensor + Normalize(0.5, 0.5)).
    _, (test_images, test_labels) = mnist.load_data(args.data_dir)
    if not 0 <= args.index < len(test_images):
        parser.error(f"--index: expected 0 to {len(test_images) - 1}, got {args.index}")
    x = mnist.normalize(test_images[args.index:args.index + 1])

    # 3. Evaluation mode (model.eval() + torch.no_grad()): apply(..., train=False).
    apply, params, state = nn.split(model)
    outputs, _ = apply(params, state, x, train=False)
    probabilities = jax.nn.softmax(outputs[0])  # logits or log-probabilities alike
    digit = int(probabilities.argmax())
    print(f"digit {digit} (probability {float(probabilities[digit]):.3f}), "
          f"label {int(test_labels[args.index])}")


if __name__ == "__main__":
    main()
