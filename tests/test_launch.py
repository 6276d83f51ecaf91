"""``jaxnet launch``: N local processes as one run, one line when it fails (issue 20 item 6,
issue 18's multi-process items), and the cluster report (``parallel._cluster``).

Real processes, each run bounded (``timeout=``): bad arguments; a process that exits 3
at once (a plain one, and a jaxnet process that fails before it joins) ends the others
fast; SIGINT/SIGTERM/SIGHUP to the launcher end every process; process 0 killed
mid-training is the launcher's last line even though JAX aborts its peer natively; and
two processes on real MNIST under the launcher match one process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest
from test_parallel import PARAM_ATOL, _env, _jaxnet_lines, _mnist_like, _write_idx

from jaxnet import checkpoint, mnist
from jaxnet.cli import main
from jaxnet.parallel import _cluster

JAXNET = [sys.executable, "-m", "jaxnet"]


def _launch(*args, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*JAXNET, "launch", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=_env(), **kwargs)


# --------------------------------------------------------------------------- bad arguments


@dataclass
class Case:
    id: str
    argv: list[str]
    match: str  # the one line on stderr (re.search)


BAD = [
    Case("nproc-0", ["--nproc", "0", "--", "true"],
         r"--nproc: expected an int in \[1, 64\], got '0'"),
    Case("nproc-too-many", ["--nproc", "65", "--", "true"],
         r"--nproc: expected an int in \[1, 64\], got '65'"),
    Case("nproc-not-int", ["--nproc=two", "--", "true"], r"--nproc: expected an int .* got 'two'"),
    Case("nproc-missing", ["--", "true"], r"--nproc: expected the number of processes"),
    Case("no-command", ["--nproc", "2", "--"], r"expected a command after --"),
    Case("no-dashes", ["--nproc", "2"], r"expected a command after --"),
    Case("command-not-found", ["--nproc", "2", "--", "no-such-program-xyz"],
         r"no-such-program-xyz: command not found"),
    Case("unknown-option", ["--nprocs", "2", "--", "true"], r"got '--nprocs' \(put the command "
         r"after --\)"),
    Case("port-out-of-range", ["--nproc", "2", "--coordinator-port", "70000", "--", "true"],
         r"--coordinator-port: expected an int in \[1, 65535\], got '70000'"),
]


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_bad_arguments_are_one_line_and_status_2(case, capsys):
    assert main(["launch", *case.argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxnet launch: error: "), err
    assert re.search(case.match, lines[0]), lines[0]


def test_each_process_gets_the_run_s_environment_and_only_others_are_prefixed(tmp_path):
    show = ("import os; print(os.environ['JAXNET_PROCESS_ID'], "
            "os.environ['JAXNET_NUM_PROCESSES'], os.environ['JAXNET_COORDINATOR_ADDRESS'])")
    proc = _launch("--nproc", 3, "--coordinator-port", 45678, "--", sys.executable, "-c", show,
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [
        "0 3 127.0.0.1:45678", "[process 1] 1 3 127.0.0.1:45678",
        "[process 2] 2 3 127.0.0.1:45678"]
    assert proc.stderr == ""


def test_initialize_distributed_with_no_arguments_joins_the_launch():
    """A script's ``parallel.initialize_distributed()`` reads the launcher's variables; it
    does not start JAX's backend, so the CPU can still be split afterwards."""
    script = ("import jax\n"
              "from jaxnet import parallel\n"
              "parallel.initialize_distributed()\n"
              "jax.config.update('jax_num_cpu_devices', 2)\n"
              "print('devices', jax.process_index(), jax.process_count(), len(jax.devices()))\n")
    proc = _launch("--nproc", 2, "--", sys.executable, "-c", script, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mine = sorted(line.removeprefix("[process 1] ") for line in proc.stdout.splitlines()
                  if "devices " in line)
    assert mine == ["devices 0 2 4", "devices 1 2 4"], proc.stdout


# --------------------------------------------------------------------------- failures

_EXIT_3_IF_1 = ("import os, sys, time\n"
                "if os.environ['JAXNET_PROCESS_ID'] == '1': sys.exit(3)\n"
                "time.sleep(300)\n")


def test_a_process_that_exits_3_at_once_ends_the_others_fast():
    t0 = time.monotonic()
    proc = _launch("--nproc", 3, "--", sys.executable, "-c", _EXIT_3_IF_1, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == ["jaxnet launch: process 1 of 3 exited with status 3; "
                                        "ended the 2 others"]
    assert elapsed < 60  # the others sleep 300 s


def _alive_with(marker: str) -> list[int]:
    """The pids whose command line holds ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(d.name))
        except OSError:
            pass  # ended meanwhile
    return found


def test_what_a_failed_run_s_processes_started_ends_with_them(tmp_path):
    """A shell script's own child (``sleep``) is in the process's group, and the launcher
    ends the group: nothing outlives the launcher (before: orphaned, ppid 1)."""
    marker = f"{os.getpid() % 1000 + 4000}.25"  # a sleep length no other test uses
    script = (f"sleep {marker} & if [ \"$JAXNET_PROCESS_ID\" = 1 ]; then sleep 1; exit 3; fi; "
              "wait")
    t0 = time.monotonic()
    proc = _launch("--nproc", 2, "--", "sh", "-c", script, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - t0 < 60
    deadline = time.monotonic() + 10
    while _alive_with(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _alive_with(f"sleep {marker}")
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "the children's own children outlived the launcher"


def test_the_launcher_loads_no_jax():
    """``jaxnet launch`` starts its processes at once: importing the command loads no JAX."""
    out = subprocess.run([sys.executable, "-c", "import sys, jaxnet.cli, jaxnet.cli._launch; "
                          "print(sorted(m for m in ('jax', 'jaxlib', 'flax', 'optax') "
                          "if m in sys.modules))"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_jaxnet_process_failing_before_it_joins_ends_its_peer_at_once(tmp_path):
    """Process 1 fails before joining; process 0 waits in ``initialize_distributed`` with
    --init-timeout 300: the launcher ends it at once, not 300 s later."""
    _write_idx(tmp_path / "d", 400, 100)
    script = ("if [ \"$JAXNET_PROCESS_ID\" = 1 ]; then exit 3; fi; exec \"$@\"")
    t0 = time.monotonic()
    proc = _launch("--nproc", 2, "--", "sh", "-c", script, "sh", *JAXNET, "train", "mnist",
                   "--data-dir", tmp_path / "d", "--hidden", 8, "--epochs", 1,
                   "--no-progress", "--init-timeout", 300, timeout=200, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines()[-1] == ("jaxnet launch: process 1 of 2 exited with status "
                                            "3; ended the 1 other")
    assert "Traceback" not in proc.stderr and "Check failure" not in proc.stderr
    assert time.monotonic() - t0 < 150


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signal_to_the_launcher_ends_every_process_with_one_line(tmp_path, signum):
    ready = ("import os, pathlib, signal, time\n"  # each signal ends it silently
             "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP): "
             "signal.signal(s, signal.SIG_DFL)\n"
             "pathlib.Path(os.environ['JAXNET_PROCESS_ID']).write_text(str(os.getpid()))\n"
             "time.sleep(300)\n")
    launcher = subprocess.Popen([*JAXNET, "launch", "--nproc", "2", "--", sys.executable,
                                 "-c", ready], cwd=tmp_path, env=_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not all((tmp_path / k).is_file() and (tmp_path / k).read_text() for k in "01"):
        assert time.monotonic() < deadline and launcher.poll() is None, "children never started"
        time.sleep(0.1)
    pids = [int((tmp_path / k).read_text()) for k in "01"]
    assert sorted(pids) == sorted(_children(launcher.pid))
    launcher.send_signal(signum)
    try:
        out, err = launcher.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        launcher.kill()
        pytest.fail("the launcher did not end within 60 s of the signal")
    word = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)",
            signal.SIGHUP: "hung up (SIGHUP)"}[signum]
    assert launcher.returncode == 128 + signum
    assert err.splitlines() == [f"jaxnet launch: {word}; ended the 2 processes"], err
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("victim", [0, 1])
def test_a_process_killed_mid_training_is_the_launcher_s_last_line(tmp_path, victim):
    """JAX aborts process 1 natively (SIGABRT, a native trace) when process 0, which holds
    the coordination service, dies: the user still sees one line naming process 0 (the
    process that ended first, not the one the launcher noticed first). Process 1 killed:
    process 0 stops (its own line), the last line names process 1."""
    _write_idx(tmp_path / "d", 2000, 500)
    launcher = subprocess.Popen(
        [*JAXNET, "launch", "--nproc", "2", "--", *JAXNET, "train", "mnist", "--data-dir",
         tmp_path / "d", "--hidden", "16", "--batch-size", "200", "--val-split", "0",
         "--epochs", "100000", "--schedule", "constant", "--no-progress", "--init-timeout",
         "120"], cwd=tmp_path, env=_env(), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        for line in launcher.stdout:  # process 0's own stdout: training runs once it logs
            if line.startswith("epoch 1/") or time.monotonic() > deadline:
                break
        [pid] = [pid for pid in _children(launcher.pid)
                 if f"JAXNET_PROCESS_ID={victim}".encode()
                 in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
        os.kill(pid, signal.SIGKILL)
        _, err = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 128 + signal.SIGKILL, err
    assert re.fullmatch(rf"jaxnet launch: process {victim} of 2 died \(signal 9, SIGKILL\)"
                        r"(; ended the 1 other)?", err.splitlines()[-1]), err
    for native in ("Check failure", "terminate called", "*** SIGABRT", "Traceback"):
        assert native not in err, err


# --------------------------------------------------------------------------- real MNIST


def test_two_processes_under_the_launcher_match_one_process(mnist_path, tmp_path):
    """The course recipe (NLL on log-softmax, Adam, constant rate, no validation split) at
    test_parallel's scale: batch 500, hidden 64, lr 0.002. At the recipe's own batch 64 and
    lr 0.01 the float32 rounding of the two-device gradient sum grows over 938 steps (one
    run: test accuracy 0.912 vs 0.929), too far for a tolerance that proves anything."""
    flags = ["train", "mnist", "--data-dir", mnist_path, "--recipe", "course", "--epochs", "1",
             "--batch-size", "500", "--hidden", "64", "--lr", "0.002", "--no-progress"]
    one = subprocess.Popen([*JAXNET, *flags, "--checkpoint-dir", "one", "--json", "one.json"],
                           cwd=tmp_path, env=_env(), text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    two = _launch("--nproc", 2, "--", *JAXNET, *flags, "--checkpoint-dir", "two", "--json",
                  "two.json", timeout=600, cwd=tmp_path)
    _, err = one.communicate(timeout=600)
    assert one.returncode == 0, err[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    assert re.search(r"^jaxnet: joined 2 processes through jaxnet launch \(process 0 of 2, "
                     r"coordinator 127\.0\.0\.1:\d+\)$", two.stdout, re.M), two.stdout
    others = [line.removeprefix("[process 1] ") for line in two.stdout.splitlines()
              if line.startswith("[process 1] ")]
    assert _jaxnet_lines("\n".join(others)) == [], others  # only process 0 prints (Gloo aside)
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert (a["devices"], b["devices"]) == (1, 2)
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.003
    like = _mnist_like(mnist.RECIPES["course"].with_updates(hidden=(64,), batch_size=500,
                                                            lr=0.002))
    u, v = (checkpoint.restore(tmp_path / n, like) for n in ("one", "two"))
    assert int(u.step) == int(v.step) > 0
    for x, y in zip(jax.tree.leaves(u.params), jax.tree.leaves(v.params), strict=True):
        np.testing.assert_allclose(y, x, rtol=0, atol=PARAM_ATOL)


# --------------------------------------------------------------------------- cluster report


SLURM = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "node[01-04]", "SLURM_NTASKS": "4",
         "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}


@pytest.mark.parametrize("environ, name", [
    (SLURM, "Slurm"),
    ({"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4"}, None),  # sbatch's shell, no srun step
    ({"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.96.0.1:34911",
      "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}, "Open MPI"),
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}, None),  # Open MPI 5: PMIx
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "JOB_COMPLETION_INDEX": "0"}, "Kubernetes"),
    ({**SLURM, "OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1"}, "Open MPI"),  # JAX's order
    ({}, None),
])
def test_detect_cluster_names_what_jax_would_use(environ, name):
    assert _cluster.detect_cluster(environ) == name


@pytest.mark.parametrize("variable, value", [("JAXNET_NUM_PROCESSES", "0"),
                                             ("JAXNET_PROCESS_ID", "-1"),
                                             ("JAXNET_NUM_PROCESSES", "two")])
def test_a_malformed_launch_variable_is_named(variable, value):
    with pytest.raises(ValueError, match=f"^{variable}: expected an int .* got '{value}'"):
        _cluster.from_environment({"JAXNET_COORDINATOR_ADDRESS": "127.0.0.1:1", variable: value})


@pytest.mark.parametrize("kind", ["Slurm", "Open MPI", "Kubeflow Trainer"])
def test_a_one_process_cluster_joins_with_one_line_saying_how(tmp_path, kind):
    """What ``srun -n 1 jaxnet train mnist --cluster`` sees (JAX's own Slurm detection:
    the coordinator from the node list, the port from the job id), ``mpirun -np 1`` under
    Open MPI 4 (the coordinator from ORTE's URI) and a one-pod Kubeflow Trainer TrainJob
    (its JAX_* variables); process 0's report says which."""
    _write_idx(tmp_path / "d", 400, 100)
    job = 40000 + os.getpid() % 4000
    port = job % 2**12 + (65535 - 2**12 + 1)  # jax's slurm_cluster
    if kind == "Slurm":
        env = {**SLURM, "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "1",
               "SLURM_JOB_ID": str(job)}
        line = f"through Slurm (process 0 of 1, coordinator localhost:{port})"
    elif kind == "Open MPI":  # ORTE's job id is a multiple of 2**12; jax divides it back
        env = {"OMPI_MCA_orte_hnp_uri": f"{job * 2**12}.0;tcp://127.0.0.1:34911",
               "OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0",
               "OMPI_COMM_WORLD_LOCAL_RANK": "0"}
        line = f"through Open MPI (process 0 of 1, coordinator 127.0.0.1:{port})"
    else:
        env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "1",
               "JAX_PROCESS_ID": "0"}
        line = (f"through the JAX_* variables (Kubeflow Trainer) (process 0 of 1, coordinator "
                f"127.0.0.1:{port})")
    proc = subprocess.run([*JAXNET, "train", "mnist", "--cluster", "--data-dir", "d",
                           "--hidden", "8", "--epochs", "1", "--val-split", "0",
                           "--no-progress", "--init-timeout", "60"], cwd=tmp_path,
                          env={**_env(), **env}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"jaxnet: joined 1 process {line}" in proc.stdout.splitlines(), proc.stdout
    assert _jaxnet_lines(proc.stderr) == []


def test_cluster_with_nothing_detected_is_one_line(tmp_path):
    proc = subprocess.run([*JAXNET, "train", "mnist", "--cluster", "--data-dir", "d"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    [line] = _jaxnet_lines(proc.stderr)
    assert line.startswith("jaxnet: error: initialize_distributed: no cluster environment "
                           "(Slurm, Open MPI, Kubernetes...) detected"), line
    assert line.endswith("or start the processes with jaxnet launch"), line
