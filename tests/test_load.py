"""``jaxnet.load``: every file training leaves behind, back into a model in one call.

The tests run from a temporary working directory with relative paths, as a user types them.
"""

import jax
import numpy as np
import optax
import pytest

import jaxnet
from jaxnet import checkpoint, interop, losses, nn
from jaxnet.train import TrainState, fit

X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32) + (X[:, 1] > 0).astype(np.int32)


def net(seed=0, hidden=8):
    """Parameters, BatchNorm statistics and Dropout: everything load must carry."""
    rngs = nn.Rngs(seed)
    return nn.Sequential(nn.Linear(4, hidden, rngs=rngs), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Dropout(0.2), nn.Linear(hidden, 3, rngs=rngs))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch ``fit`` run checkpointed in ``<tmp>/run``: ``(run folder, final state)``."""
    run = tmp_path_factory.mktemp("fit") / "run"
    apply, params, model_state = nn.split(net())
    state = TrainState.create(params, optax.adam(1e-2), model_state=model_state, seed=0)
    state, _ = fit(state, apply, losses.cross_entropy, optax.adam(1e-2), (X, Y), epochs=2,
                   batch_size=16, checkpoint_dir=run, progress=False, log=None)
    return run, jax.tree.map(np.asarray, (state.params, state.model_state))


def predictions(model):
    apply, params, model_state = nn.split(model)
    return np.asarray(apply(params, model_state, X, train=False)[0])


def expected_predictions(values):
    params, model_state = values
    apply, _, _ = nn.split(net())
    return np.asarray(apply(params, model_state, X, train=False)[0])


def test_a_fit_run_folder_loads_for_prediction(trained):
    """Today's documented route fails on a run folder: it holds a whole TrainState."""
    run, values = trained
    with pytest.raises(checkpoint.CheckpointMismatchError, match="structure differs"):
        checkpoint.restore(run, like=nn.state_dict(net()))
    model = net(seed=1)
    assert jaxnet.load(run, into=model) is model
    np.testing.assert_array_equal(predictions(model), expected_predictions(values))
    bn = model[1]
    np.testing.assert_array_equal(np.asarray(bn.running_mean[...]),
                                  values[1]["layers"][1]["running_mean"])
    assert not np.allclose(np.asarray(bn.running_var[...]), 1.0)  # trained statistics came back


def test_one_step_folder_and_an_older_step(trained):
    run, values = trained
    newest = jaxnet.load(run / "step_00000002", into=net(seed=1))
    np.testing.assert_array_equal(predictions(newest), expected_predictions(values))
    older = jaxnet.load(run, into=net(seed=1), step=1)
    assert not np.array_equal(predictions(older), predictions(newest))
    np.testing.assert_array_equal(
        predictions(older), predictions(jaxnet.load(run / "step_00000001", into=net(seed=2))))
    with pytest.raises(ValueError, match="step: .* is the checkpoint of step 1, got step=2"):
        jaxnet.load(run / "step_00000001", into=net(), step=2)
    with pytest.raises(checkpoint.CheckpointNotFoundError, match=r"complete steps: \[1, 2\]"):
        jaxnet.load(run, into=net(), step=7)


def test_a_saved_state_dict_safetensors_and_pt(tmp_path):
    trained = net(seed=3)
    trained[1].running_mean[...] = np.arange(8, dtype=np.float32)  # a non-default statistic
    checkpoint.save("saved", nn.state_dict(trained), step=5)
    interop.save("model.safetensors", trained)
    want = predictions(trained)
    for path in ("saved", "saved/step_00000005", "model.safetensors"):
        np.testing.assert_array_equal(predictions(jaxnet.load(path, into=net(seed=4))), want)
    pytest.importorskip("torch")
    interop.save("model.pt", trained)
    np.testing.assert_array_equal(predictions(jaxnet.load("model.pt", into=net(seed=4))), want)


def test_a_course_pt_training_checkpoint_needs_its_key(tmp_path):
    torch = pytest.importorskip("torch")
    trained = net(seed=3)
    sd = interop.to_torch_state_dict(trained, tensors=True)
    torch.save({"epoch": 5, "model_state_dict": sd}, "ckpt.pt")
    with pytest.raises(ValueError, match="pass key="):
        jaxnet.load("ckpt.pt", into=net())
    model = jaxnet.load("ckpt.pt", into=net(), key="model_state_dict")
    np.testing.assert_array_equal(predictions(model), predictions(trained))


def test_the_wrong_architecture_says_what_the_path_holds(trained, tmp_path):
    run, _ = trained
    with pytest.raises(checkpoint.CheckpointMismatchError) as e:
        jaxnet.load(run, into=net(hidden=16))
    message = str(e.value)
    assert "holds a training checkpoint (step 2, epoch 2) of Linear layers 4-8-3" in message
    assert "into= is a Sequential of Linear layers 4-16-3" in message
    assert "build into= with the architecture it was trained with" in message
    interop.save("small.safetensors", net(hidden=8))
    with pytest.raises(interop.StateDictMismatchError, match="small.safetensors does not fit"):
        jaxnet.load("small.safetensors", into=net(hidden=16))


def test_paths_that_are_not_models(tmp_path):
    np.savez("x.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match=r"x.npz is not a jaxnet checkpoint folder, "
                                         r"\.safetensors or \.pt file"):
        jaxnet.load("x.npz", into=net())
    with pytest.raises(FileNotFoundError, match="path: missing.pt does not exist"):
        jaxnet.load("missing.pt", into=net())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty is a folder that holds no jaxnet checkpoint"):
        jaxnet.load("empty", into=net())
    checkpoint.save("runs/a", nn.state_dict(net()), step=1)
    with pytest.raises(ValueError, match=r"its subfolders \['a'\] hold checkpoints"):
        jaxnet.load("runs", into=net())
    with pytest.raises(TypeError, match="into: expected the model to load into"):
        jaxnet.load("runs/a", into=nn.state_dict(net()))
    with pytest.raises(ValueError, match="key: only for a PyTorch file"):
        jaxnet.load("runs/a", into=net(), key="model")
    interop.save("m.safetensors", net())
    with pytest.raises(ValueError, match="step: only for a checkpoint folder"):
        jaxnet.load("m.safetensors", into=net(), step=1)


def test_a_forged_manifest_cannot_make_load_allocate_much(tmp_path):
    """The arrays to read are sized from the manifest: far more than the model is refused."""
    checkpoint.save("big", {"params": nn.state_dict(net()), "junk": np.zeros(300_000)}, step=1)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="far more than a checkpoint"):
        jaxnet.load("big", into=net())


def test_restore_names_jaxnet_load_for_a_training_checkpoint_or_a_missing_like(tmp_path):
    """The course's habit (``torch.load(path)``, or restoring a training run into a model's
    state dict) gets the one-call way in the message."""
    model = nn.MLP(4, [3], 2, rngs=0)
    apply, params, model_state = nn.split(model)
    x, y = np.ones((8, 4), np.float32), np.array([0, 1] * 4)
    fit(TrainState.create(params, optax.sgd(0.1), model_state=model_state), apply,
        losses.cross_entropy, optax.sgd(0.1), (x, y), epochs=1, batch_size=4,
        checkpoint_dir="run", progress=False, log=None)
    with pytest.raises(TypeError, match=r"like: required.*jaxnet\.load\(path, into=model\)"):
        checkpoint.restore("run")
    with pytest.raises(checkpoint.CheckpointMismatchError,
                       match=r"structure differs.*whole training state.*jaxnet\.load"):
        checkpoint.restore("run", like=nn.state_dict(model))
