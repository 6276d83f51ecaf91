import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import callbacks, checkpoint, fingerprint, losses, metrics, nn
from jaxnet.data import ArrayDataset, DataLoader, Dataset, default_collate
from jaxnet.train import NonFiniteError, TrainState, evaluate, fit, make_epoch, make_train_step


def blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = (rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[y]).astype(np.float32)
    return x, y


def setup(seed=0, lr=0.05, opt=None, model=None):
    apply, params, model_state = nn.split(model or nn.MLP(4, [16], 3, rngs=seed))
    optimizer = opt or optax.sgd(lr)
    return apply, params, optimizer, TrainState.create(params, optimizer,
                                                       model_state=model_state, seed=seed)


class PerItem(Dataset):
    """The course's way: one example per __getitem__."""

    def __init__(self, x, y):
        self.features, self.labels = x, y

    def __getitem__(self, index):
        return self.features[index], self.labels[index]

    def __len__(self):
        return self.labels.shape[0]


class DropoutBatchNormNet(nn.Module):
    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(4, 32, rngs=rngs)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(32, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))


def test_create_gives_the_optimizers_own_init_and_copies_the_model_state():
    # create builds the state in one compiled program; it must equal what the
    # optimizer's eager init gives, for a chain with a schedule, and copy the
    # BatchNorm statistics as it copies the parameters
    apply, params, model_state = nn.split(DropoutBatchNormNet(rngs=nn.Rngs(0)))
    optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.adamw(optax.cosine_decay_schedule(1e-3, 100)))
    state = TrainState.create(params, optimizer, model_state=model_state)
    expected = optimizer.init(params)
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(expected), strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    for got, given in zip(jax.tree.leaves(state.model_state), jax.tree.leaves(model_state),
                          strict=True):
        assert got is not given and np.array_equal(got, given)

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

    def counting_apply(params, model_state, inputs, **mode):
        traces.append(inputs.shape)  # runs only while tracing
        return apply(params, model_state, inputs, **mode)

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
    model = nn.Linear(3, 1, rngs=nn.Rngs(0))
    apply, params, _ = nn.split(model)
    state = TrainState.create(params, optimizer)
    state, history = fit(state, apply, losses.mse_loss, optimizer, (x, y), epochs=40,
                         batch_size=32, progress=False, log=None)
    np.testing.assert_allclose(state.params["kernel"], w_true, atol=2e-2)
    np.testing.assert_allclose(state.params["bias"], [0.25], atol=2e-2)
    assert history[-1]["train_loss"] < 1e-3


def test_array_scan_and_per_item_dataset_paths_agree_and_log_one_line_per_epoch():
    x, y = blobs()
    lines = []
    runs = []
    for loader in (DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True, seed=4),
                   DataLoader(PerItem(x, y), batch_size=32, shuffle=True, seed=4)):
        apply, _, optimizer, state = setup(lr=0.2)
        state, hist = fit(state, apply, losses.cross_entropy, optimizer, loader, epochs=3,
                          val_data=PerItem(x, y), progress=False, log=lines.append)
        runs.append((state, hist))
    (s1, h1), (s2, h2) = runs
    assert [e["epoch"] for e in h1] == [1, 2, 3]
    np.testing.assert_allclose([e["train_loss"] for e in h1], [e["train_loss"] for e in h2],
                               rtol=1e-5)
    for u, v in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert h1[-1]["val_accuracy"] == h2[-1]["val_accuracy"] > 0.9
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


def test_evaluate_matches_metrics_and_loss_for_arrays_datasets_and_loaders():
    x, y = blobs(n=123)
    apply, params, _, state = setup()
    out = evaluate(apply, params, (x, y), loss_fn=losses.cross_entropy, batch_size=50)
    logits, _ = apply(params, {}, x)
    np.testing.assert_allclose(out["accuracy"], metrics.accuracy(y, logits), rtol=1e-6)
    np.testing.assert_allclose(out["loss"], losses.cross_entropy(logits, y), rtol=1e-5)
    for data in (PerItem(x, y), DataLoader(PerItem(x, y), batch_size=7, shuffle=True),
                 DataLoader(ArrayDataset(x, y), batch_size=10)):
        other = evaluate(apply, state, data, loss_fn=losses.cross_entropy)
        np.testing.assert_allclose(other["accuracy"], out["accuracy"], rtol=1e-6)
        np.testing.assert_allclose(other["loss"], out["loss"], rtol=1e-5)
    # a loader's drop_last is honoured, as in PyTorch: the last 3 examples are not seen
    dropped = evaluate(apply, state, DataLoader(ArrayDataset(x, y), 10, drop_last=True))
    np.testing.assert_allclose(dropped["accuracy"], metrics.accuracy(y[:120], logits[:120]),
                               rtol=1e-6)


@pytest.mark.parametrize("dataset", [ArrayDataset, PerItem])
def test_non_finite_loss_is_reported_with_epoch_step_and_name(dataset, tmp_path):
    x, y = blobs(n=64)
    x[40, 0] = np.nan  # example 40 is in batch 2 (0-based) without shuffling
    apply, _, optimizer, state = setup()
    with pytest.raises(NonFiniteError) as info:
        fit(state, apply, losses.cross_entropy, optimizer, dataset(x, y), epochs=2,
            batch_size=16, shuffle=False, progress=False, log=None, checkpoint_dir=tmp_path)
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

    def poisoned(params, model_state, inputs, **mode):
        # d/db sqrt(0 * b^2) is NaN while the value stays 0: only layers/2/bias is hit.
        bias = params["layers"][2]["bias"]
        out, model_state = apply(params, model_state, inputs, **mode)
        return out + 0.0 * jnp.sqrt(0.0 * jnp.sum(bias ** 2)), model_state

    with pytest.raises(NonFiniteError) as info:
        fit(state, poisoned, losses.cross_entropy, optimizer, (x, y), epochs=1, batch_size=16,
            progress=False, log=None)
    assert (info.value.epoch, info.value.step) == (1, 0)
    assert info.value.names == ["grad of layers/2/bias"]
    assert "epoch 1, step 0" in str(info.value)


# ---------------------------------------------------------------- train/eval mode, keys, state

def test_dropout_uses_the_state_key_per_step_and_is_reproducible():
    x, y = blobs()
    prints = []
    for seed in (0, 0, 1):  # the TrainState seed only drives dropout: same model init
        apply, _, optimizer, state = setup(model=DropoutBatchNormNet(rngs=nn.Rngs(0)))
        state = state.replace(rng=jax.random.PRNGKey(seed))
        state, _ = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2,
                       batch_size=32, progress=False, log=None)
        prints.append(fingerprint(state.params))
    assert prints[0] == prints[1] != prints[2]


def test_batchnorm_statistics_train_in_fit_and_evaluate_uses_them():
    x, y = blobs()
    apply, _, optimizer, state = setup(lr=0.1, model=DropoutBatchNormNet(rngs=nn.Rngs(0)))
    before = jax.tree.map(np.asarray, state.model_state)
    state, history = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=4,
                         batch_size=32, val_data=(x, y), progress=False, log=None)
    after = state.model_state["bn"]
    assert not np.allclose(after["running_mean"], before["bn"]["running_mean"])
    assert history[-1]["val_accuracy"] > 0.9
    # evaluation is deterministic (dropout off) and uses the running statistics
    a = evaluate(apply, state, (x, y), loss_fn=losses.cross_entropy)
    b = evaluate(apply, state, (x[:50], y[:50]), loss_fn=losses.cross_entropy)
    assert a == evaluate(apply, state, (x, y), loss_fn=losses.cross_entropy)
    fresh = evaluate(apply, state.params, (x[:50], y[:50]), model_state=before,
                     loss_fn=losses.cross_entropy)
    assert fresh["loss"] != b["loss"]  # other statistics, other outputs


def test_resume_with_dropout_and_batchnorm_is_bit_identical(tmp_path):
    x, y = blobs()

    def run(epochs, **kwargs):
        apply, _, optimizer, state = setup(opt=optax.adam(1e-2),
                                           model=DropoutBatchNormNet(rngs=nn.Rngs(0)))
        return fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=epochs,
                   batch_size=32, progress=False, log=None, **kwargs)[0]

    straight = run(3)
    run(2, checkpoint_dir=tmp_path)
    resumed = run(3, checkpoint_dir=tmp_path, resume=True)
    assert fingerprint(resumed) == fingerprint(straight)
    assert fingerprint(resumed.model_state) == fingerprint(straight.model_state)


def test_fit_with_the_course_dataset_class_and_loader():
    x, y = blobs(n=100)
    apply, _, optimizer, state = setup(lr=0.2)
    loader = DataLoader(PerItem(x, y), batch_size=8, shuffle=True, drop_last=True,
                        num_workers=0)
    seen = []

    class Batches(callbacks.Callback):
        def on_batch_end(self, run, batch, loss):
            seen.append(batch)

    state, history = fit(state, apply, losses.cross_entropy, optimizer, loader, epochs=2,
                         callbacks=[Batches()], progress=False, log=None)
    assert int(state.step) == 2 * 12 and seen == list(range(12)) * 2
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_worker_threads_give_the_same_batches_in_the_same_order():
    x, y = blobs(n=50)
    plain = DataLoader(PerItem(x, y), batch_size=8, shuffle=True, seed=2, pad_last=True)
    threaded = DataLoader(PerItem(x, y), batch_size=8, shuffle=True, seed=2, pad_last=True,
                          num_workers=3)
    for a, b in zip(plain.iter_epoch(1), threaded.iter_epoch(1), strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    # the per-item path pads exactly like the array path
    arrays = DataLoader(ArrayDataset(x, y), batch_size=8, shuffle=True, seed=2, pad_last=True)
    for a, b in zip(plain.iter_epoch(1), arrays.iter_epoch(1), strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    assert default_collate([(1.5, 2), (0.5, 3)])[0].dtype == np.float32


# ---------------------------------------------------------------- callbacks

class Recorder(callbacks.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, run):
        self.calls.append(("begin", run.start_epoch, run.epochs))

    def on_epoch_begin(self, run, epoch, state):
        self.calls.append(("epoch_begin", epoch, int(state.step)))

    def on_epoch_end(self, run, epoch, state, logs):
        self.calls.append(("epoch_end", epoch, sorted(k for k in logs if k.startswith("val"))))

    def on_train_end(self, run, state):
        self.calls.append(("end", int(state.step)))


def test_callback_protocol_order_and_arguments():
    x, y = blobs(n=64)
    apply, _, optimizer, state = setup()
    rec = Recorder()
    fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2, batch_size=32,
        val_data=(x, y), callbacks=[rec], progress=False, log=None)
    assert rec.calls == [("begin", 0, 2),
                         ("epoch_begin", 1, 0), ("epoch_end", 1, ["val_accuracy", "val_loss"]),
                         ("epoch_begin", 2, 2), ("epoch_end", 2, ["val_accuracy", "val_loss"]),
                         ("end", 4)]


def test_on_train_end_runs_when_training_fails():
    x, y = blobs(n=64)
    x[0, 0] = np.inf
    apply, _, optimizer, state = setup()
    rec = Recorder()
    with pytest.raises(NonFiniteError):
        fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2, batch_size=32,
            callbacks=[rec], progress=False, log=None)
    assert rec.calls[-1][0] == "end"


def test_early_stopping_stops_when_the_monitor_stops_improving():
    x, y = blobs()
    apply, _, optimizer, state = setup(lr=1e-9)  # nothing improves
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=1)
    state, history = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=10,
                         batch_size=50, val_data=(x, y), callbacks=[stop], progress=False,
                         log=None)
    assert len(history) == 2 and stop.stopped_epoch == 2  # Keras's rule: 1 epoch of patience
    with pytest.raises(KeyError, match="monitor 'val_loss' is not in the epoch logs"):
        fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=3, batch_size=50,
            callbacks=[callbacks.EarlyStopping()], progress=False, log=None)  # continues


def test_progress_bar_and_epoch_log_write_where_they_should(capsys):
    x, y = blobs(n=64)
    for data in ((x, y), PerItem(x, y)):
        apply, _, optimizer, state = setup()
        fit(state, apply, losses.cross_entropy, optimizer, data, epochs=2, batch_size=16,
            progress=True)
        out, err = capsys.readouterr()
        assert out.count("epoch ") == 2 and "epoch 2/2  train_loss" in out
        assert "epoch" in err or "batch" in err  # tqdm draws on stderr
