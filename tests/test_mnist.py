"""The MNIST capstone on real data: train / validation / test, and the course's promise."""

import numpy as np
import pytest

from jaxnet import callbacks, mnist


@pytest.fixture(scope="module")
def data(mnist_path):
    return mnist.load_data(mnist_path)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_recipe_reaches_98_percent_in_5_epochs(data, seed):
    config = mnist.RECIPES["default"].with_updates(seed=seed)
    assert (config.epochs, config.hidden, config.val_split) == (5, (512, 256), 5000)
    lines = []
    result = mnist.train_mnist(config, data=data, progress=False, log=lines.append)
    assert result["test_accuracy"] >= 0.980, result["test_accuracy"]
    assert len(result["epoch_seconds"]) == 5
    # validation after every epoch, on the held-out images; the test set only at the end
    assert all("val_accuracy" in line for line in lines) and len(lines) == 5
    assert all("test" not in key for e in result["history"] for key in e)
    assert result["val_accuracy"] == result["history"][-1]["val_accuracy"] > 0.97


def test_dropout_mlp_reaches_98_percent(data):
    config = mnist.RECIPES["default"].with_updates(dropout=0.1)
    result = mnist.train_mnist(config, data=data, progress=False, log=None)
    assert result["test_accuracy"] >= 0.980, result["test_accuracy"]


def test_validation_split_is_seeded_disjoint_and_held_out(data):
    (x, y), _ = data
    (xt, yt), (xv, yv) = mnist.split_validation(x, y, 5000, seed=0)
    assert len(xt) == 55000 and len(xv) == 5000
    (_, _), (xv2, _) = mnist.split_validation(x, y, 5000, seed=0)
    (_, _), (xv3, _) = mnist.split_validation(x, y, 5000, seed=1)
    np.testing.assert_array_equal(xv, xv2)
    assert not np.array_equal(xv, xv3)
    rows = {r.tobytes() for r in xt[:2000]}
    assert not any(r.tobytes() in rows for r in xv[:2000] if r.any())
    assert mnist.split_validation(x, y, 0, seed=0) == ((x, y), None)


def test_course_recipe_is_the_course_and_trains_on_all_60000_images(data):
    config = mnist.RECIPES["course"]
    assert (config.optimizer, config.lr, config.batch_size, config.epochs, config.loss,
            config.schedule, config.val_split) == ("adam", 0.01, 64, 5, "nll", "constant", 0)
    result = mnist.train_mnist(config.with_updates(epochs=1), data=data, progress=False,
                               log=None)
    assert result["test_accuracy"] > 0.85
    assert result["val_accuracy"] is None and "val_loss" not in result["history"][0]
    assert int(result["state"].step) == 60000 // 64 + 1  # every image, last batch partial


def test_same_seed_same_fingerprint_other_seed_differs(data):
    config = mnist.RECIPES["default"].with_updates(epochs=1, hidden=(64,))
    runs = [mnist.train_mnist(config.with_updates(seed=s), data=data, progress=False, log=None)
            for s in (3, 3, 4)]
    prints = [r["params_fingerprint"] for r in runs]
    assert prints[0] == prints[1] != prints[2]


def test_schedule_length_is_part_of_the_saved_configuration():
    default = mnist.RECIPES["default"]
    assert default.to_json(430)["schedule_steps"] == 5 * 430
    assert "schedule_steps" not in mnist.RECIPES["course"].to_json(938)


@pytest.mark.parametrize("changes,match", [
    (dict(epochs=0), "epochs: expected a positive int, got 0"),
    (dict(batch_size=-5), "batch_size: expected a positive int, got -5"),
    (dict(lr=-0.1), "lr: expected a positive finite number, got -0.1"),
    (dict(lr=float("nan")), "lr: expected a positive finite number, got nan"),
    (dict(momentum=1.5), r"momentum: expected a number in \[0, 1\), got 1.5"),
    (dict(optimizer="rmsprop"), "optimizer: expected one of .* got 'rmsprop'"),
    (dict(hidden=(512, 0)), r"hidden: expected layer sizes in \[1, 2147483647\] .* got \(512, 0\)"),
    (dict(val_split=-1), "val_split: expected a non-negative int, got -1"),
    (dict(dropout=1.0), r"dropout: expected a probability in \[0, 1\), got 1.0"),
    (dict(seed=2**32), r"seed: expected an int in \[0, 2\*\*32\), got 4294967296"),
])
def test_bad_config_names_field_and_value(changes, match):
    with pytest.raises(ValueError, match=match):
        mnist.RECIPES["default"].with_updates(**changes)


def test_batch_size_larger_than_the_training_set_is_refused(data):
    config = mnist.RECIPES["default"].with_updates(batch_size=55001, epochs=1)
    with pytest.raises(ValueError, match="batch_size: expected at most the 55000 training "
                                         "images, got 55001"):
        mnist.train_mnist(config, data=data, progress=False, log=None)
    with pytest.raises(ValueError, match="val_split: expected fewer than the 60000"):
        mnist.train_mnist(config.with_updates(val_split=60000), data=data, progress=False,
                          log=None)


class _Interrupt(Exception):
    pass


class _StopAfter(callbacks.Callback):
    """'Kills' the run right after epoch ``n`` was checkpointed."""

    def __init__(self, n):
        self.n = n

    def on_epoch_end(self, run, epoch, state, logs):
        if epoch == self.n:
            raise _Interrupt


@pytest.mark.parametrize("recipe", ["default", "course"])
def test_interrupted_and_resumed_equals_straight_for_each_recipe(data, recipe, tmp_path):
    (x, y), test = data
    small = ((x[:6000], y[:6000]), test)
    config = mnist.RECIPES[recipe].with_updates(epochs=3, hidden=(32,), val_split=0)
    kw = dict(data=small, progress=False, log=None)
    straight = mnist.train_mnist(config, **kw)
    with pytest.raises(_Interrupt):
        mnist.train_mnist(config, checkpoint_dir=tmp_path, callbacks=[_StopAfter(1)], **kw)
    resumed = mnist.train_mnist(config, checkpoint_dir=tmp_path, resume=True, **kw)
    assert resumed["params_fingerprint"] == straight["params_fingerprint"]
    # timings stay consistent: this process trained epochs 2-3 only
    assert resumed["train_seconds"] < resumed["train_seconds_total"]
    assert [e["run"] for e in resumed["history"]] == [0, 1, 1]


def test_growing_epochs_is_exact_for_a_constant_rate_and_refused_for_a_schedule(data, tmp_path):
    (x, y), test = data
    small = ((x[:6000], y[:6000]), test)
    kw = dict(data=small, progress=False, log=None)
    course = mnist.RECIPES["course"].with_updates(hidden=(32,))
    straight = mnist.train_mnist(course.with_updates(epochs=2), **kw)
    mnist.train_mnist(course.with_updates(epochs=1), checkpoint_dir=tmp_path / "c", **kw)
    grown = mnist.train_mnist(course.with_updates(epochs=2), checkpoint_dir=tmp_path / "c",
                              resume=True, **kw)
    assert grown["params_fingerprint"] == straight["params_fingerprint"]
    default = mnist.RECIPES["default"].with_updates(hidden=(32,), val_split=0)
    mnist.train_mnist(default.with_updates(epochs=1), checkpoint_dir=tmp_path / "d", **kw)
    lines = []
    with pytest.raises(ValueError, match=r"schedule_steps 47 \(checkpoint\) vs 94 \(now\); "
                                         r"only epochs may change \(a setting that follows "
                                         r"epochs, such as a schedule's length"):
        mnist.train_mnist(default.with_updates(epochs=2), checkpoint_dir=tmp_path / "d",
                          resume=True, **{**kw, "log": lines.append})
    assert not any("continuing" in line for line in lines)  # refused before announcing it
