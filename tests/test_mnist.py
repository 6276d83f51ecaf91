"""The MNIST capstone on real data: the default recipe keeps the course's promise."""

import pytest

from jaxnet import mnist


@pytest.fixture(scope="module")
def data(mnist_path):
    return mnist.load_data(mnist_path)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_recipe_reaches_98_percent_in_5_epochs(data, seed):
    config = mnist.RECIPES["default"].with_updates(seed=seed)
    assert (config.epochs, config.hidden) == (5, (512, 256))
    result = mnist.train_mnist(config, data=data, progress=False, log=None)
    assert result["test_accuracy"] >= 0.980, result["test_accuracy"]
    assert len(result["epoch_seconds"]) == 5


def test_course_recipe_is_the_course_and_trains(data):
    config = mnist.RECIPES["course"]
    assert (config.optimizer, config.lr, config.batch_size, config.epochs, config.loss,
            config.schedule) == ("adam", 0.01, 64, 5, "nll", "constant")
    result = mnist.train_mnist(config.with_updates(epochs=1), data=data, progress=False,
                               log=None)
    assert result["test_accuracy"] > 0.85


def test_same_seed_same_fingerprint_other_seed_differs(data):
    config = mnist.RECIPES["default"].with_updates(epochs=1, hidden=(64,))
    runs = [mnist.train_mnist(config.with_updates(seed=s), data=data, progress=False, log=None)
            for s in (3, 3, 4)]
    prints = [r["params_fingerprint"] for r in runs]
    assert prints[0] == prints[1] != prints[2]


@pytest.mark.parametrize("changes,match", [
    (dict(epochs=0), "epochs: expected a positive int, got 0"),
    (dict(batch_size=-5), "batch_size: expected a positive int, got -5"),
    (dict(lr=-0.1), "lr: expected a positive finite number, got -0.1"),
    (dict(lr=float("nan")), "lr: expected a positive finite number, got nan"),
    (dict(momentum=1.5), r"momentum: expected a number in \[0, 1\), got 1.5"),
    (dict(optimizer="rmsprop"), "optimizer: expected one of .* got 'rmsprop'"),
    (dict(hidden=(512, 0)), r"hidden: expected positive layer sizes .* got \(512, 0\)"),
])
def test_bad_config_names_field_and_value(changes, match):
    with pytest.raises(ValueError, match=match):
        mnist.RECIPES["default"].with_updates(**changes)
