"""PyTorch interop: state dicts in and out, files without pickle, ``jaxnet convert``.

The PyTorch tests need the ``torch`` extra (CI installs ``torch==2.13.0`` CPU)
and skip, saying so, without it; the rest run with numpy and safetensors only.
"""

import builtins
import pickle
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import run_python
from jaxnet import cli, interop, mnist, nn
from jaxnet.train import evaluate

NO_TORCH = ("PyTorch is not installed: pip install 'jaxnet-course[torch]' (CI installs "
            "torch==2.13.0 CPU and runs these)")


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared: one thread is the fastest here
    torch.manual_seed(0)
    yield torch
    torch.set_num_threads(threads)


@pytest.fixture
def no_torch(monkeypatch):
    """``import torch`` fails, as on a machine without the extra."""
    monkeypatch.setitem(sys.modules, "torch", None)


# --------------------------------------------------------------------------- the course's models


class NeuralNetwork(nn.Module):
    """The course's model, in jaxnet."""

    def __init__(self, num_inputs, num_outputs, *, rngs):
        self.layers = nn.Sequential(
            nn.Linear(num_inputs, 30, rngs=rngs), nn.ReLU(),
            nn.Linear(30, 20, rngs=rngs), nn.ReLU(),
            nn.Linear(20, num_outputs, rngs=rngs))

    def __call__(self, x):
        return self.layers(x)


def torch_neural_network(torch, num_inputs, num_outputs):
    """The course's model, in PyTorch."""

    class TorchNeuralNetwork(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(num_inputs, 30), torch.nn.ReLU(),
                torch.nn.Linear(30, 20), torch.nn.ReLU(),
                torch.nn.Linear(20, num_outputs))

        def forward(self, x):
            return self.layers(x)

    return TorchNeuralNetwork()


def torch_mlp(torch, sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_logits(torch, model, x):
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def jax_logits(model, x):
    apply, params, state = nn.split(model)
    return np.asarray(apply(params, state, jnp.asarray(x))[0])


def leaves(model):
    return {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(nn.state_dict(model))[0]}


def assert_bit_identical(a, b):
    la, lb = leaves(a), leaves(b)
    assert list(la) == list(lb)
    for k in la:
        assert la[k].dtype == lb[k].dtype, k
        assert la[k].tobytes() == lb[k].tobytes(), k


class BatchNormNet(nn.Module):
    """A user module with named attributes, BatchNorm1d and Dropout."""

    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(8, 16, rngs=rngs)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(16, 4, rngs=rngs))

    def __call__(self, x):
        return self.head(self.drop(self.bn(self.fc1(x))))


def torch_batchnorm_net(torch):
    class TorchBatchNormNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(8, 16)
            self.bn = torch.nn.BatchNorm1d(16)
            self.drop = torch.nn.Dropout(0.3)
            self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(16, 4))

        def forward(self, x):
            return self.head(self.drop(self.bn(self.fc1(x))))

    return TorchBatchNormNet()


def random_inputs(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


# --------------------------------------------------------------------------- PyTorch -> jaxnet


def test_course_neural_network_gives_pytorch_logits(torch):
    torch_model = torch_neural_network(torch, 50, 3)
    given = NeuralNetwork(50, 3, rngs=nn.Rngs(0))
    model = interop.from_torch_state_dict(torch_model.state_dict(), given)
    assert list(torch_model.state_dict()) == list(interop.to_torch_state_dict(model))
    x = random_inputs(64, 50)
    np.testing.assert_allclose(jax_logits(model, x), torch_logits(torch, torch_model, x),
                               rtol=0, atol=1e-5)
    assert model is given  # loaded in place and returned, as model.load_state_dict(sd)


def test_dropping_the_return_value_keeps_the_loaded_weights(torch):
    """PyTorch's habit ``model.load_state_dict(sd)`` written as a call whose value is dropped:
    the model holds the PyTorch values (it kept its untrained weights before)."""
    torch_model = torch_neural_network(torch, 50, 3)
    model = NeuralNetwork(50, 3, rngs=nn.Rngs(0))
    interop.from_torch_state_dict(torch_model.state_dict(), model)  # return value dropped
    x = random_inputs(64, 50)
    np.testing.assert_allclose(jax_logits(model, x), torch_logits(torch, torch_model, x),
                               rtol=0, atol=1e-5)


def test_a_refused_state_dict_leaves_the_model_as_it_was():
    model = nn.MLP(3, [2], 2, rngs=0)
    before = leaves(model)
    sd = interop.to_torch_state_dict(nn.MLP(3, [2], 2, rngs=1))
    sd["2.weight"] = sd["2.weight"][:1]  # one mis-shaped key: nothing at all is loaded
    with pytest.raises(interop.StateDictMismatchError, match="mis-shaped"):
        interop.from_torch_state_dict(sd, model)
    after = leaves(model)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


def test_mnist_mlp_gives_pytorch_logits_both_ways(torch):
    torch_model = torch_mlp(torch, [784, 512, 256, 10])
    model = interop.from_torch_state_dict(torch_model.state_dict(),
                                          mnist.build_model(mnist.MnistConfig()))
    x = random_inputs(32, 784)
    np.testing.assert_allclose(jax_logits(model, x), torch_logits(torch, torch_model, x),
                               rtol=0, atol=1e-5)
    # and back: a fresh PyTorch model takes jaxnet's weights with strict=True
    other = mnist.build_model(mnist.MnistConfig(seed=7))
    fresh = torch_mlp(torch, [784, 512, 256, 10])
    fresh.load_state_dict(interop.to_torch_state_dict(other, tensors=True), strict=True)
    np.testing.assert_allclose(torch_logits(torch, fresh, x), jax_logits(other, x),
                               rtol=0, atol=1e-5)


def test_batchnorm_and_dropout_match_in_eval_mode_with_running_stats(torch):
    torch_model = torch_batchnorm_net(torch)
    optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.1)
    torch_model.train()
    for _ in range(5):  # move the running statistics and the affine parameters
        loss = torch_model(torch.randn(32, 8) * 3 + 1).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sd = torch_model.state_dict()
    assert int(sd["bn.num_batches_tracked"]) == 5
    model = interop.from_torch_state_dict(sd, BatchNormNet(rngs=nn.Rngs(0)))
    np.testing.assert_array_equal(np.asarray(model.bn.running_mean[...]),
                                  sd["bn.running_mean"].numpy())
    np.testing.assert_array_equal(np.asarray(model.bn.running_var[...]),
                                  sd["bn.running_var"].numpy())
    x = random_inputs(16, 8, seed=1)
    np.testing.assert_allclose(jax_logits(model, x), torch_logits(torch, torch_model, x),
                               rtol=0, atol=1e-5)
    # back to PyTorch: every key (num_batches_tracked included) for strict=True
    out = interop.to_torch_state_dict(model, tensors=True)
    assert sorted(out) == sorted(sd)
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    fresh = torch_batchnorm_net(torch)
    fresh.load_state_dict(out, strict=True)
    np.testing.assert_allclose(torch_logits(torch, fresh, x), jax_logits(model, x),
                               rtol=0, atol=1e-5)


def test_state_dict_keys_follow_pytorch_names():
    sd = interop.to_torch_state_dict(BatchNormNet(rngs=nn.Rngs(0)))
    # layer by layer (NNX keeps attributes by name, not in __init__'s order), weight first
    assert list(sd) == ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                        "bn.num_batches_tracked", "fc1.weight", "fc1.bias", "head.1.weight",
                        "head.1.bias"]
    assert sd["fc1.weight"].shape == (16, 8) and sd["bn.num_batches_tracked"].dtype == np.int64
    nested = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 2, rngs=nn.Rngs(0))),
                           nn.GELU(), nn.Linear(2, 2, bias=False, rngs=nn.Rngs(1)))
    assert list(interop.to_torch_state_dict(nested)) == ["1.0.weight", "1.0.bias", "3.weight"]
    assert list(interop.to_torch_state_dict(nn.MLP(4, [3, 3], 2, dropout=0.5, rngs=0))) == [
        "0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]


def test_params_dict_and_train_state_give_the_models_state_dict():
    import optax

    from jaxnet.train import TrainState

    for model in (NeuralNetwork(5, 2, rngs=nn.Rngs(0)), BatchNormNet(rngs=nn.Rngs(1))):
        want = interop.to_torch_state_dict(model)
        _, params, state = nn.split(model)
        for got in (interop.to_torch_state_dict(nn.state_dict(model)),
                    interop.to_torch_state_dict(params, model_state=state),
                    interop.to_torch_state_dict(TrainState.create(params, optax.sgd(0.1),
                                                                  model_state=state))):
            assert list(got) == list(want)
            assert all(np.array_equal(got[k], want[k]) for k in want)


def test_values_are_cast_to_the_models_dtypes():
    sd = {k: v.astype(np.float64) for k, v in
          interop.to_torch_state_dict(nn.MLP(3, [2], 2, rngs=0)).items()}
    model = interop.from_torch_state_dict(sd, nn.MLP(3, [2], 2, rngs=1))
    assert all(v.dtype == np.float32 for v in leaves(model).values())


# --------------------------------------------------------------------------- round trips


def trained_like(model):
    """``model`` with every value replaced by a distinct random one (BatchNorm stats too)."""
    values = nn.state_dict(model)
    rng = np.random.default_rng(3)
    values = jax.tree.map(lambda v: jnp.asarray(rng.uniform(0.5, 2, np.shape(v)), v.dtype),
                          values)
    out = nnx.clone(model)
    nn.load_state_dict(out, values)
    return out


def test_jaxnet_to_pytorch_to_jaxnet_is_bit_identical(torch, tmp_path):
    model = trained_like(BatchNormNet(rngs=nn.Rngs(0)))
    torch_model = torch_batchnorm_net(torch)
    torch_model.load_state_dict(interop.to_torch_state_dict(model, tensors=True), strict=True)
    back = interop.from_torch_state_dict(torch_model.state_dict(),
                                         BatchNormNet(rngs=nn.Rngs(5)))
    assert_bit_identical(back, model)
    # through files, as a user keeps them: torch.save / .safetensors
    torch.save(torch_model.state_dict(), tmp_path / "model.pt")
    for name in ("model.pt", "model.safetensors"):
        if name.endswith(".safetensors"):
            interop.save(tmp_path / name, torch_model.state_dict())
        loaded = interop.load(tmp_path / name)
        assert_bit_identical(interop.from_torch_state_dict(loaded, BatchNormNet(rngs=nn.Rngs(6))),
                             model)
    interop.save(tmp_path / "jaxnet.pt", model)
    assert_bit_identical(interop.from_torch_state_dict(
        torch.load(tmp_path / "jaxnet.pt", weights_only=True), BatchNormNet(rngs=nn.Rngs(7))),
        model)


def test_safetensors_round_trip_needs_no_torch(no_torch, tmp_path):
    model = trained_like(BatchNormNet(rngs=nn.Rngs(0)))
    path = interop.save("model.safetensors", model)  # relative: the test's own folder
    assert path == tmp_path / "model.safetensors"
    loaded = interop.load("model.safetensors")
    assert loaded["bn.num_batches_tracked"].dtype == np.int64
    assert_bit_identical(interop.from_torch_state_dict(loaded, BatchNormNet(rngs=nn.Rngs(1))),
                         model)
    with pytest.raises(FileExistsError, match="model.safetensors already exists; pass "
                                              r"overwrite=True \(--overwrite\)"):
        interop.save("model.safetensors", model)
    before = path.read_bytes()
    interop.save("model.safetensors", nn.MLP(2, [2], 2, rngs=0), overwrite=True)
    assert path.read_bytes() != before and sorted(interop.load(path)) == [
        "0.bias", "0.weight", "2.bias", "2.weight"]
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary left


def test_pytorch_files_without_torch_say_what_to_install(no_torch, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 not really")
    for call in (lambda: interop.load("model.pt"),
                 lambda: interop.save("out.pth", {"w": np.ones(2)})):
        with pytest.raises(ImportError, match=r"needs PyTorch: pip install "
                                              r"'jaxnet-course\[torch\]'; "
                                              r"or use a \.safetensors file"):
            call()
    assert not (tmp_path / "out.pth").exists()


# --------------------------------------------------------------------------- never unpickle


class _Payload:
    """Unpickling this creates the marker file: what an attacker's code would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def test_a_pt_file_with_a_pickle_payload_is_refused_without_running_it(torch, tmp_path):
    marker = tmp_path / "payload-ran"
    torch.save({"0.weight": torch.ones(2, 2), "evil": _Payload(marker)}, tmp_path / "a.pt")
    (tmp_path / "b.pth").write_bytes(pickle.dumps({"w": _Payload(marker)}))  # legacy pickle
    torch.save(torch_mlp(torch, [2, 2]), tmp_path / "whole_model.pt")  # torch.save(model)
    for name in ("a.pt", "b.pth", "whole_model.pt"):
        with pytest.raises(ValueError, match=f"{name}: (refused|not a readable PyTorch file)"):
            interop.load(tmp_path / name)
        assert not marker.exists(), name
    with pytest.raises(ValueError, match=r"refused: it holds Python objects besides tensors "
                                         r"\(it names (io|builtins)\.open, which "
                                         r"weights_only=True does not allow\)"):
        interop.load(tmp_path / "a.pt")
    # the CLI too: one line, no traceback, nothing run
    status, _, err = run_cli(["convert", str(tmp_path / "a.pt"), "--to", "ck"])
    assert status == 1 and err.startswith("jaxnet: error: ") and "refused" in err
    assert not marker.exists() and not Path("ck").exists()


def test_a_file_named_for_the_other_format_says_what_it_is(torch, tmp_path):
    """Issue 18: a renamed or random file is named for what it is, and torch's advice to set
    weights_only=False (which would run the file's code) is never repeated."""
    torch.save({"w": torch.ones(2)}, tmp_path / "t.pt")
    (tmp_path / "t.pt").rename(tmp_path / "t.safetensors")
    interop.save(tmp_path / "s.safetensors", {"w": np.ones(2, np.float32)})
    (tmp_path / "s.safetensors").rename(tmp_path / "s.pt")
    (tmp_path / "noise.pth").write_bytes(b"\x13" + np.random.default_rng(0).bytes(511))
    for name, match in [
            ("t.safetensors", r"t.safetensors: not a safetensors file: it looks like a PyTorch "
                              r"file \(a zip archive\): rename it to t.pt"),
            ("s.pt", r"s.pt: not a PyTorch file: it looks like a safetensors file: rename it "
                     r"to s.safetensors"),
            ("noise.pth", r"noise.pth: not a PyTorch file \(no zip archive / pickle header\)")]:
        with pytest.raises(ValueError, match=match) as info:
            interop.load(tmp_path / name)
        assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)


def test_a_training_checkpoint_dict_needs_key(torch, tmp_path):
    model = torch_mlp(torch, [3, 2])
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"holds a training checkpoint, not a state dict: its "
                                         r"entries \['model_state_dict', 'optimizer_state_dict'"
                                         r"\] are dicts; pass key="):
        interop.load(tmp_path / "ckpt.pt")
    sd = interop.load(tmp_path / "ckpt.pt", key="model_state_dict")
    assert sorted(sd) == ["0.bias", "0.weight"]
    with pytest.raises(ValueError, match=r"key: .* has no entry 'model'; its top-level keys"):
        interop.load(tmp_path / "ckpt.pt", key="model")


# --------------------------------------------------------------------------- mismatches


def test_a_mismatch_lists_every_key_on_both_sides():
    good = interop.to_torch_state_dict(NeuralNetwork(50, 3, rngs=nn.Rngs(0)))
    bad = dict(good)
    del bad["layers.0.bias"], bad["layers.4.weight"]
    bad["layers.2.weight"] = good["layers.2.weight"].T
    bad["layers.4.bias"] = np.zeros(5, np.float32)
    bad["fc9.weight"] = np.zeros((3, 3), np.float32)
    bad["extra"] = np.zeros(1, np.float32)
    bad["note"] = "hello"
    with pytest.raises(interop.StateDictMismatchError) as info:
        interop.from_torch_state_dict(bad, NeuralNetwork(50, 3, rngs=nn.Rngs(0)))
    e = info.value
    assert isinstance(e, ValueError)
    assert e.missing == ["layers.0.bias", "layers.4.weight"]
    assert e.unexpected == ["fc9.weight", "extra"]
    assert e.mismatched == [("layers.2.weight", (20, 30), (30, 20)),
                            ("layers.4.bias", (3,), (5,))]
    assert e.not_arrays == [("note", "str")]
    message = str(e)
    assert "\n" not in message
    for text in ("2 missing", "'layers.0.bias' (30,)", "'layers.4.weight' (3, 20)",
                 "2 unexpected", "'fc9.weight' (3, 3)", "'extra' (1,)", "2 mis-shaped",
                 "'layers.2.weight' expected (20, 30), got (30, 20) (transposed?",
                 "'layers.4.bias' expected (3,), got (5,)", "'note' (str)"):
        assert text in message, text


def test_a_data_parallel_prefix_is_explained():
    sd = {f"module.{k}": v for k, v in
          interop.to_torch_state_dict(nn.MLP(2, [2], 2, rngs=0)).items()}
    with pytest.raises(ValueError, match=r"every unexpected key starts with 'module\.'.*"
                                         r"removeprefix\('module\.'\)"):
        interop.from_torch_state_dict(sd, nn.MLP(2, [2], 2, rngs=0))


def test_bad_arguments_name_themselves(tmp_path):
    model = nn.MLP(2, [2], 2, rngs=0)
    with pytest.raises(TypeError, match="state_dict: expected a dict of tensors, got the path "
                                        "'m.pt'; read it with jaxnet.interop.load"):
        interop.from_torch_state_dict("m.pt", model)
    with pytest.raises(TypeError, match="model: expected a jaxnet model"):
        interop.from_torch_state_dict({}, {"layers": {}})
    with pytest.raises(ValueError, match=r"path: expected a \.safetensors or \.pt/\.pth/\.bin "
                                         r"file, got 'model\.npz'"):
        interop.load("model.npz")
    with pytest.raises(FileNotFoundError, match="path: nowhere.safetensors does not exist"):
        interop.load("nowhere.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(ValueError, match="junk.safetensors: not a readable safetensors file"):
        interop.load("junk.safetensors")

    class WithConv(nn.Module):
        def __init__(self):
            self.conv = nnx.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0))

    with pytest.raises(TypeError, match="model: conv is a flax.nnx.Conv, which has no PyTorch "
                                        "mapping"):
        interop.to_torch_state_dict(WithConv())


# --------------------------------------------------------------------------- one MNIST epoch


def test_a_pytorch_model_trained_one_mnist_epoch_keeps_its_test_accuracy(torch, mnist_path,
                                                                         tmp_path):
    (x_train, y_train), (x_test, y_test) = mnist.load_data(mnist_path)
    normalize = lambda x: ((x.astype(np.float32) / 255.0 - 0.5) / 0.5)  # noqa: E731
    x, y = torch.from_numpy(normalize(x_train)), torch.from_numpy(y_train.astype(np.int64))
    torch_model = torch_mlp(torch, [784, 512, 256, 10])
    optimizer = torch.optim.Adam(torch_model.parameters(), lr=1e-3)
    torch_model.train()
    for batch in torch.randperm(len(x)).split(128):  # one epoch, batch 128, Adam
        loss = torch.nn.functional.cross_entropy(torch_model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(torch_model.state_dict(), tmp_path / "mnist.pt")

    x_eval = normalize(x_test)
    torch_out = torch_logits(torch, torch_model, x_eval)
    torch_accuracy = float(np.mean(torch_out.argmax(1) == y_test))
    model = interop.from_torch_state_dict(interop.load(tmp_path / "mnist.pt"),
                                          mnist.build_model(mnist.MnistConfig()))
    apply, params, state = nn.split(model)
    jax_out = np.asarray(apply(params, state, x_eval)[0])
    top2 = np.sort(torch_out, axis=1)[:, -2:]
    assert np.array_equal(jax_out.argmax(1), torch_out.argmax(1)), (
        f"{int(np.sum(jax_out.argmax(1) != torch_out.argmax(1)))} predictions differ; "
        f"smallest top-2 margin {np.min(top2[:, 1] - top2[:, 0]):.2e}")
    correct = int(np.sum(jax_out.argmax(1) == y_test))
    assert correct == int(np.sum(torch_out.argmax(1) == y_test))
    assert correct / len(y_test) == torch_accuracy > 0.9
    result = evaluate(apply, params, (x_eval, y_test), model_state=state)  # jaxnet's own metric
    assert result["accuracy"] == np.float32(torch_accuracy)
    np.testing.assert_allclose(jax_out, torch_out, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- the CLI, in process


def run_cli(argv):
    """``jaxnet …`` in this process: ``(status, stdout, stderr)``."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def test_import_jaxnet_loads_neither_torch_nor_safetensors():
    code = ("import sys, jaxnet, jaxnet.interop; "
            "print([m for m in ('torch', 'safetensors') if m in sys.modules])")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
