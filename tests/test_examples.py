"""Each example runs as a user would run it; its printed numbers are asserted."""

import re

import pytest

from conftest import ROOT, run_python

EXAMPLES = ["autograd_logistic", "toy_classifier", "random_binary", "regression", "mnist_mlp"]


def run_example(name, *args):
    proc = run_python(str(ROOT / "examples" / f"{name}.py"), *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def number(pattern, text):
    match = re.search(pattern + r"\s*(-?\d+\.\d+)", text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


@pytest.mark.parametrize("name", EXAMPLES)
def test_help(name):
    out = run_example(name, "--help")
    assert "usage:" in out


def test_autograd_logistic_prints_course_numbers():
    out = run_example("autograd_logistic")
    assert number("loss =", out) == pytest.approx(0.0852, abs=1e-4)
    assert number("dL/dw1 =", out) == pytest.approx(-0.0898, abs=1e-4)
    assert number("dL/db =", out) == pytest.approx(-0.0817, abs=1e-4)


def test_toy_classifier_trains_saves_and_reloads(tmp_path):
    out = run_example("toy_classifier", "--out-dir", str(tmp_path / "model"))
    batch_lines = [line for line in out.splitlines() if re.match(r"epoch \d batch \d/3", line)]
    assert len(batch_lines) == 9  # 3 epochs x 3 batches (2 + 2 + 1 samples)
    assert "(1 samples)" in batch_lines[2]
    assert "Total params: 752" in out
    assert number("train accuracy:", out) == 1.0
    assert number("test accuracy:", out) == 1.0
    assert "reloaded model gives identical predictions: True" in out
    assert (tmp_path / "model" / "step_00000003" / "manifest.json").is_file()


def test_random_binary_reports_test_accuracy_and_says_labels_are_random():
    out = run_example("random_binary")
    assert "train 80 examples, test 20 examples" in out
    assert len(re.findall(r"^epoch \d/5", out, flags=re.M)) == 5
    assert 0.0 <= number("test accuracy:", out) <= 1.0
    assert "labels are random" in out


def test_regression_keeps_best_validation_checkpoint(tmp_path):
    out = run_example("regression", "--out-dir", str(tmp_path))
    vals = [float(v) for v in re.findall(r"val_loss (\d+\.\d+)", out)]
    best_epoch = int(re.search(r"best epoch: (\d+)", out).group(1))
    assert len(vals) == 20
    assert vals[best_epoch - 1] == min(vals)
    assert number("best val_loss:", out) == pytest.approx(min(vals), abs=1e-4)
    test_loss = number("test loss of the best checkpoint:", out)
    assert test_loss < 0.1  # the target's variance is ~0.4; the noise floor is 0.01
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("step_")] == \
        [f"step_{best_epoch:08d}"]


def test_mnist_mlp_example_on_real_data(mnist_path):
    out = run_example("mnist_mlp", "--data-dir", str(mnist_path), "--epochs", "1")
    assert "Total params: 535,818" in out
    assert number("test accuracy:", out) > 0.93  # one epoch at lr 1e-3 measures ~0.95
    assert number("f1", out) > 0.93
