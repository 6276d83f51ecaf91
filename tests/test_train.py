import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import checkpoint, fingerprint, losses, metrics, nn
from jaxnet.data import ArrayDataset, DataLoader
from jaxnet.train import NonFiniteError, TrainState, evaluate, fit, make_epoch, make_train_step


def blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = (rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[y]).astype(np.float32)
    return x, y


def setup(seed=0, lr=0.05, opt=None):
    apply, params = nn.functional(nn.MLP(4, [16], 3, rngs=seed))
    optimizer = opt or optax.sgd(lr)
    return apply, params, optimizer, TrainState.create(params, optimizer, seed=seed)


def test_train_state_is_a_pytree_and_create_copies_params():
    apply, params, optimizer, state = setup()
    leaves = jax.tree.leaves(state)
    assert int(state.step) == 0 and len(leaves) == 4 + 2  # params (4) + step + rng (sgd: no state)
    step = make_train_step(apply, losses.cross_entropy, optimizer)
    step(state, (jnp.ones((2, 4)), jnp.array([0, 1])))
    # the donated state is consumed, the caller's params are not
    assert state.params["layers"][0]["kernel"].is_deleted()
    assert not params["layers"][0]["kernel"].is_deleted()


def test_train_step_lowers_loss_and_counts_steps():
    x, y = blobs()
    apply, _, optimizer, state = setup(lr=0.1)
    step = make_train_step(apply, losses.cross_entropy, optimizer)
    first = None
    for _ in range(30):
        state, m = step(state, (x, y))
        first = first if first is not None else float(m["loss"])
    assert int(state.step) == 30
    assert float(m["loss"]) < 0.5 * first


def test_step_compiles_once_across_an_epoch_with_a_partial_last_batch():
    x, y = blobs(n=70)
    traces = []
    apply, _, optimizer, state = setup()

    def counting_apply(params, inputs):
        traces.append(inputs.shape)  # runs only while tracing
        return apply(params, inputs)

    step = make_train_step(counting_apply, losses.cross_entropy, optimizer)
    loader = DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True, pad_last=True)
    sizes = []
    for xb, yb, mask in loader:
        state, _ = step(state, (xb, yb, mask))
        sizes.append(int(mask.sum()))
    assert sizes == [32, 32, 6]
    assert traces == [(32, 4)]


def test_padding_does_not_change_the_result():
    x, y = blobs(n=10)
    apply, _, optimizer, state = setup()
    step = make_train_step(apply, losses.cross_entropy, optimizer, donate=False)
    pad_x = np.concatenate([x, np.full((6, 4), 99.0, np.float32)])
    pad_y = np.concatenate([y, np.zeros(6, np.int32)])
    mask = np.arange(16) < 10
    a, _ = step(state, (x, y))
    b, _ = step(state, (pad_x, pad_y, mask))
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)


def test_scan_epoch_equals_python_loop_of_steps():
    x, y = blobs(n=100)
    apply, _, optimizer, state = setup(opt=optax.adam(1e-2))
    loader = DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True, seed=3)
    indices, mask = loader.index_batches(0)
    run_epoch = make_epoch(apply, losses.cross_entropy, optimizer, donate=False)
    scanned, m = run_epoch(state, (jnp.asarray(x), jnp.asarray(y)), indices, mask)
    step = make_train_step(apply, losses.cross_entropy, optimizer, donate=False)
    looped = state
    for i in range(len(indices)):
        looped, _ = step(looped, (x[indices[i]], y[indices[i]], mask[i]))
    assert m["loss"].shape == (4,)
    for u, v in zip(jax.tree.leaves(scanned), jax.tree.leaves(looped), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1, momentum=0.9), optax.adam(0.05),
                                       optax.adamw(0.05, weight_decay=0.0)])
def test_optimizers_reach_the_least_squares_minimum(optimizer):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype(np.float32)
    w_true = np.array([[1.5], [-2.0], [0.5]], np.float32)
    y = x @ w_true + 0.25
    model = nn.Linear(3, 1, rngs=0)
    apply, params = nn.functional(model)
    state = TrainState.create(params, optimizer)
    state, history = fit(state, apply, losses.mse_loss, optimizer, (x, y), epochs=40,
                         batch_size=32, progress=False, log=None)
    np.testing.assert_allclose(state.params["kernel"], w_true, atol=2e-2)
    np.testing.assert_allclose(state.params["bias"], [0.25], atol=2e-2)
    assert history[-1]["train_loss"] < 1e-3


def test_fit_fast_and_per_step_paths_agree_and_log_one_line_per_epoch():
    x, y = blobs()
    lines = []
    runs = []
    for fast in (True, False):
        apply, _, optimizer, state = setup(lr=0.2)
        state, hist = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=3,
                          batch_size=32, val_data=(x, y), fast=fast, progress=False,
                          log=lines.append)
        runs.append((state, hist))
    (s1, h1), (s2, h2) = runs
    assert [e["epoch"] for e in h1] == [1, 2, 3]
    np.testing.assert_allclose([e["train_loss"] for e in h1], [e["train_loss"] for e in h2],
                               rtol=1e-4)
    assert h1[-1]["val_accuracy"] > 0.9
    assert len(lines) == 6 and lines[0].startswith("epoch 1/3  train_loss")


def test_fit_accepts_a_dataloader_and_its_order():
    x, y = blobs()
    apply, _, optimizer, state = setup()
    loader = DataLoader(ArrayDataset(x, y), batch_size=50, shuffle=True, seed=5)
    state, hist = fit(state, apply, losses.cross_entropy, optimizer, loader, epochs=2,
                      progress=False, log=None)
    assert int(state.step) == 2 * 4


def test_fit_is_bit_reproducible_for_a_seed():
    x, y = blobs()
    prints = []
    for seed in (0, 0, 1):
        apply, _, optimizer, state = setup(seed=0, opt=optax.adam(1e-2))
        state, _ = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2,
                       batch_size=32, seed=seed, progress=False, log=None)
        prints.append(fingerprint(state.params))
    assert prints[0] == prints[1] != prints[2]


def test_evaluate_matches_metrics_and_loss():
    x, y = blobs(n=123)
    apply, params, _, _ = setup()
    out = evaluate(apply, params, (x, y), loss_fn=losses.cross_entropy, batch_size=50)
    logits = apply(params, x)
    np.testing.assert_allclose(out["accuracy"], metrics.accuracy(y, logits), rtol=1e-6)
    np.testing.assert_allclose(out["loss"], losses.cross_entropy(logits, y), rtol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_non_finite_loss_is_reported_with_epoch_step_and_name(fast, tmp_path):
    x, y = blobs(n=64)
    x[40, 0] = np.nan  # example 40 is in batch 2 (0-based) without shuffling
    apply, _, optimizer, state = setup()
    with pytest.raises(NonFiniteError) as info:
        fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2, batch_size=16,
            shuffle=False, fast=fast, progress=False, log=None, checkpoint_dir=tmp_path)
    err = info.value
    assert (err.epoch, err.step) == (1, 2)
    assert "loss" in err.names and "grad of layers/0/kernel" in err.names
    assert checkpoint.all_steps(tmp_path) == []  # nothing non-finite was saved


def test_resumed_fit_equals_uninterrupted_fit(tmp_path):
    x, y = blobs()
    apply, _, optimizer, state = setup(opt=optax.adam(1e-2))
    straight, hist = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=3,
                         batch_size=32, progress=False, log=None)
    apply, _, optimizer, state = setup(opt=optax.adam(1e-2))
    fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2, batch_size=32,
        progress=False, log=None, checkpoint_dir=tmp_path, keep=5)
    assert checkpoint.all_steps(tmp_path) == [1, 2]
    apply, _, optimizer, fresh = setup(opt=optax.adam(1e-2))
    lines = []
    resumed, hist2 = fit(fresh, apply, losses.cross_entropy, optimizer, (x, y), epochs=3,
                         batch_size=32, progress=False, log=lines.append,
                         checkpoint_dir=tmp_path, resume=True)
    assert fingerprint(resumed) == fingerprint(straight)
    assert [e["epoch"] for e in hist2] == [1, 2, 3]
    assert "resume: continuing from" in lines[0]


def test_fit_refuses_to_overwrite_an_existing_run(tmp_path):
    x, y = blobs()
    apply, _, optimizer, state = setup()
    fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=1, progress=False,
        log=None, checkpoint_dir=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    apply, _, optimizer, state = setup()
    with pytest.raises(checkpoint.CheckpointExistsError, match="already holds checkpoints"):
        fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=1, progress=False,
            log=None, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_non_finite_gradient_with_finite_loss_names_the_parameter():
    x, y = blobs(n=64)
    apply, params, optimizer, state = setup()

    def poisoned(params, inputs):
        # d/db sqrt(0 * b^2) is NaN while the value stays 0: only layers/2/bias is hit.
        bias = params["layers"][2]["bias"]
        return apply(params, inputs) + 0.0 * jnp.sqrt(0.0 * jnp.sum(bias ** 2))

    with pytest.raises(NonFiniteError) as info:
        fit(state, poisoned, losses.cross_entropy, optimizer, (x, y), epochs=1, batch_size=16,
            progress=False, log=None)
    assert (info.value.epoch, info.value.step) == (1, 0)
    assert info.value.names == ["grad of layers/2/bias"]
    assert "epoch 1, step 0" in str(info.value)
