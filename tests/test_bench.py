"""The benchmark's plumbing (``benchmarks/``), without timing anything.

``nox -s bench -- --quick`` is the real smoke check (minutes); these tests run
``mnist_peers.main(["--quick"])`` with the peers, the ceiling and the memory
runs replaced by made-up numbers, and check that the result files carry issue
20's keys, that the targets' ratios and verdicts follow from the numbers, and
that ``gpu_check.sh`` refuses in one line where JAX sees no GPU. No timing
assertions.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _targets  # noqa: E402
import mnist_peers  # noqa: E402

# Made-up steady epochs (seconds) per row, and times to first result.
EPOCH = {"jaxnet": 1.0, "jaxnet_warm": 1.0, "pytorch": 4.0, "pytorch_warm": 4.0,
         "torch_compile": 3.0, "nnx": 2.0, "keras": 1.5, "keras_spe": 1.25, "equinox": 2.5,
         "floor": 0.95}
FIRST = {"jaxnet": 8.0, "jaxnet_warm": 6.0, "pytorch": 20.0, "pytorch_warm": 18.0,
         "torch_compile": 60.0}


def fake_run(bf16_available, too_slow=()):
    def run_peer(peer, *, epochs, batch_size, hidden, seed, data_dir, round_dir, args=(),
                 timeout=None):
        assert "{round_dir}" not in json.dumps(peer.environ(round_dir))
        if peer.key in too_slow:
            raise mnist_peers.PeerError(f"timed out after {timeout:.0f} s (--peer-timeout)")
        if "--precision" in args and not bf16_available:
            raise mnist_peers.PeerError("precision API not available")
        scale = 0.5 if "--precision" in args else 1.0
        e = EPOCH[peer.key] * scale
        return {"peer": peer.key, "epochs": [e * 3] + [e] * (epochs - 1), "seed": seed,
                "batch_size": batch_size, "hidden": list(hidden),
                "time_to_result_s": FIRST.get(peer.key, 5.0),
                "test_accuracy": None if peer.key == "floor" else 0.97,
                "other_cpu_cores": 0.0, "steal_cores": 0.0, "peak_rss_mib": 500.0}
    return run_peer


@pytest.fixture
def fake_machine(monkeypatch):
    monkeypatch.setattr(mnist_peers._machine, "matmul_ceiling", lambda: {"numpy": 100.0})
    monkeypatch.setattr(mnist_peers._memory, "run_one", lambda n: {
        "devices": n, "batch_size": 8192, "epochs": 1, "wall_s": 1.0, "peak_rss_mib": 400.0 + n,
        "epoch_s": 0.5, "compile_s": 0.1})
    monkeypatch.setattr(mnist_peers, "plot_grid", lambda *a, **k: False)
    # the peers' packages as if installed: the runs are faked, and CI's venv (the README's
    # test command) has torch but not the bench extra's keras/equinox/flax peers
    monkeypatch.setattr(mnist_peers, "installed", lambda package: True)


@pytest.mark.parametrize("bf16", [True, False])
def test_quick_mode_writes_issue_20s_keys(tmp_path, monkeypatch, fake_machine, bf16):
    monkeypatch.setattr(mnist_peers, "run_peer", fake_run(bf16))
    assert mnist_peers.main(["--quick", "--out", str(tmp_path)]) == 0
    peers = json.loads((tmp_path / "mnist_peers.json").read_text())
    grid = json.loads((tmp_path / "cost_growth.json").read_text())
    for report in (peers, grid):  # every file records the machine
        cpu = report["cpu"]
        assert {"model_name", "family", "model", "cores", "flags"} <= set(cpu)
        assert {"avx2", "avx512f", "avx512_bf16", "amx_tile"} <= set(cpu["flags"])
        assert {"date", "load_average", "jaxnet_git", "versions"} <= set(report)
        assert "jax" in report["versions"] and "torch" in report["versions"]
    assert set(EPOCH) <= set(peers["peers"])  # the new rows: keras_spe, torch_compile, floor
    keys = {row["key"] for row in peers["targets"]}
    assert keys == {"ceiling_share", "floor", "fastest_jax_peer", "pytorch_epoch",
                    "torch_compile_epoch", "first_result_cold", "first_result_warm"}
    assert set(peers["time_to_first_result"]) == {"jaxnet", "jaxnet_warm", "pytorch",
                                                   "pytorch_warm", "torch_compile"}
    memory = json.loads((tmp_path / "memory_grid.json").read_text())
    assert [r["devices"] for r in memory["rows"]] == [1, 2]
    assert {"cpu", "load_average", "jaxnet_git"} <= set(memory)
    cell = grid["cells"][0]
    assert (cell["batch_size"], cell["hidden"]) == (1024, [512, 256])
    if bf16:
        assert grid["precision"]["status"] == "measured"
        assert cell["jaxnet_bf16_s"] == pytest.approx(0.5)
        assert grid["precision_targets"][0]["verdict"] == "holds"  # 0.5x at equal accuracy
    else:
        assert grid["precision"]["status"] == "precision API not available"
        assert "jaxnet_bf16_s" not in cell and grid["precision_targets"] == []


def test_a_row_that_times_out_is_reported_not_measured(tmp_path, monkeypatch, fake_machine):
    monkeypatch.setattr(mnist_peers, "run_peer", fake_run(True, too_slow={"torch_compile"}))
    assert mnist_peers.main(["--quick", "--out", str(tmp_path), "--peer-timeout", "7",
                             "--no-grid", "--no-memory"]) == 0
    peers = json.loads((tmp_path / "mnist_peers.json").read_text())
    assert peers["not_measured"] == {"torch_compile": "round 1: timed out after 7 s "
                                                      "(--peer-timeout)"}
    assert "torch_compile" not in peers["peers"] and "pytorch" in peers["peers"]
    rows = {r["key"]: r for r in peers["targets"]}
    assert rows["torch_compile_epoch"]["verdict"] == "not measured"
    assert rows["pytorch_epoch"]["verdict"].startswith("holds")


def test_targets_follow_the_ratios():
    runs = {k: [{"epochs": [9.0, e, e], "time_to_result_s": FIRST.get(k, 5.0)},
                {"epochs": [9.0, e * 1.1, e * 1.1], "time_to_result_s": FIRST.get(k, 5.0)}]
            for k, e in EPOCH.items()}
    runs["jaxnet"][1]["epochs"] = [9.0, 1.0, 1.0]  # round 2: floor 1.045, jaxnet 1.0
    rows = {r["key"]: r for r in _targets.table_targets(runs, 2, gflop=50.0, ceiling=100.0)}
    assert rows["floor"]["values"] == pytest.approx([1 / 0.95, 1 / 1.045])
    assert rows["floor"]["verdict"] == "holds in every round"
    # the fastest JAX peer is Keras with steps_per_execution: 1.25x, then 1.375x
    assert rows["fastest_jax_peer"]["values"] == pytest.approx([1.25, 1.375])
    assert rows["pytorch_epoch"]["values"] == pytest.approx([0.25, 1 / 4.4])
    assert rows["torch_compile_epoch"]["verdict"] == "holds in every round"
    assert rows["first_result_cold"]["values"] == pytest.approx([0.4, 0.4])
    assert rows["first_result_warm"]["values"] == pytest.approx([6 / 18, 6 / 18])
    assert rows["ceiling_share"]["verdict"] == "information (no target)"
    runs["jaxnet"][0]["epochs"] = [9.0, 1.2, 1.2]  # round 1: 1.26x the floor
    rows = {r["key"]: r for r in _targets.table_targets(runs, 2, gflop=50.0, ceiling=100.0)}
    assert rows["floor"]["verdict"] == "within noise (holds in some rounds)"
    assert rows["fastest_jax_peer"]["verdict"] == "within noise (holds in some rounds)"


def test_precision_target_needs_equal_accuracy_and_a_quarter_off():
    base = {"hidden": [512, 256], "batch_size": 64, "jaxnet_s": 1.0, "jaxnet_accuracy": 0.97}
    verdicts = [_targets.precision_targets([{**base, "jaxnet_bf16_s": s,
                                              "jaxnet_bf16_accuracy": a}])[0]["verdict"]
                for s, a in ((0.7, 0.97), (0.8, 0.97), (1.2, 0.97), (0.7, 0.95))]
    assert verdicts[:3] == ["holds", "fails", "bf16 does not pay here"]
    assert verdicts[3].startswith("fails (accuracy differs by 0.0200")


@pytest.mark.skipif(any(d.platform == "gpu" for d in jax.devices()),
                    reason="a GPU is visible: gpu_check.sh would run the whole check")
def test_gpu_check_refuses_in_one_line_without_a_gpu(tmp_path):
    out = tmp_path / "gpu.json"
    res = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(out)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no GPU: jax.devices() shows cpu"), res.stderr
    assert not out.exists()
