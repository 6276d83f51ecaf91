"""Multi-process failures are one line in every process (issue 18, Deliver item 6).

Each row of the table is one 2-process run on CPU over loopback that must
fail before training: settings that differ, process 0 stopping on a
pre-check, a taken coordinator port, two processes started as process 0,
and the Python API (``fit(..., mesh=)`` with different ``config``). Every
run is a pair of real subprocesses; all rows start together (they mostly
wait) and each has a bounded time; a hang fails its row, never the suite.
Ports are picked free by binding port 0. Beside the table: two processes started as
process 0 at the same moment, made deterministic (the second is refused while the first
has passed its checks but does not listen yet).

The row asserts, for each process: its exit status, that its stderr holds
exactly one line of jaxnet's (XLA's, absl's and Gloo's own log lines aside)
matching ``match``, and no "Traceback" nor native abort ("terminate called",
"Check failure", a ``*** SIGABRT`` trace).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_parallel import _env, _free_port, _jaxnet_lines, _write_idx

LIMIT_S = 150  # each process is killed this long after its start (ten start at once on 2 cores)
INIT_S = 6  # --init-timeout of the rows whose peer never comes
COMMON = ["train", "mnist", "--hidden", "8", "--batch-size", "100", "--val-split", "0",
          "--epochs", "2", "--schedule", "constant", "--no-progress"]


@dataclass
class Case:
    id: str
    args: tuple[list[str], list[str]]  # each process's own arguments (after COMMON)
    rc: tuple[int, int]
    match: tuple[str, str]  # a regex each process's one line must match (re.search)
    ids: tuple[int, int] = (0, 1)  # the process ids the two processes are given
    setup: str = ""  # "taken": the port is held by a plain listening socket;
    # "after0": the second process starts once the first listens on the port
    code: str | None = None  # a Python script (argv: port, process id) instead of the command
    timeout: tuple[str, ...] = field(default=("--init-timeout", "30"))


_FIT_SCRIPT = """
import sys
from jaxnet import losses, nn, parallel
from jaxnet.train import TrainState, fit
import numpy as np, optax
port, k = sys.argv[1], int(sys.argv[2])
parallel.initialize_distributed(f"127.0.0.1:{port}", 2, k, timeout_s=30)
mesh = parallel.make_mesh()
x = np.ones((8, 2), np.float32); y = np.array([0, 1] * 4)
apply, params, ms = nn.split(nn.MLP(2, [4], 2, rngs=0))
opt = optax.sgd(0.1)
try:
    fit(TrainState.create(params, opt, model_state=ms), apply, losses.cross_entropy, opt,
        (x, y), epochs=1, batch_size=4, config={"lr": 0.1 * (k + 1)}, mesh=mesh,
        progress=False, log=None)
except parallel.DistributedError as e:
    print(f"jaxnet: error: {e}", file=sys.stderr)
    sys.exit(3)
"""

CASES = [
    Case("lr-seed-dropout-epochs-data-differ",
         (["--lr", "0.01", "--seed", "1", "--dropout", "0.1", "--epochs", "2"],
          ["--lr", "0.02", "--seed", "2", "--dropout", "0.2", "--epochs", "3",
           "--data-dir", "d2"]), (1, 1),
         (r"^jaxnet: error: process {k} of 2: the processes' settings differ: --epochs is 2 in "
          r"process 0 and 3 in process 1; --lr is 0.01 in process 0 and 0.02 in process 1; "
          r"--seed is 1 in process 0 and 2 in process 1; --dropout is 0.1 in process 0 and "
          r"0.2 in process 1; --data-dir is \"400 training and 100 test images, content "
          r"[0-9a-f]{{16}}\" in process 0 and \"400 training and 100 test images, content "
          r"[0-9a-f]{{16}}\" in process 1; start every process with the same settings",) * 2),
    Case("process-0-fails-a-pre-check", (["--json", "exists.json"], []), (2, 1),
         (r"^jaxnet: error: --json: exists.json already exists; pass --overwrite",
          r"^jaxnet: error: process 0 of 2 stopped before training: --json: exists.json "
          r"already exists; pass --overwrite")),
    Case("coordinator-port-taken", ([], []), (2, 1),
         (r"^jaxnet: error: --coordinator-address: port \d+ is in use on this host .*choose "
          r"a free port",
          r"^jaxnet: error: initialize_distributed: process 1 of 2 could not connect .* "
          rf"within {INIT_S} s; .*a process that stopped before joining \(see its own "
          r"message\) leaves the others waiting this long: jaxnet launch, or --init-timeout, "
          r"ends them sooner$"), setup="taken", timeout=("--init-timeout", str(INIT_S))),
    Case("two-processes-given-process-id-0", (["--init-timeout", "60"], []), (1, 2),
         (r"^jaxnet: error: initialize_distributed: process 0 of 2 could not connect .* "
          r"within 60 s",
          r"^jaxnet: error: --coordinator-address: port \d+ is in use on this host \(.*another "
          r"process started as process 0: each process needs its own process id\)"),
         ids=(0, 0), setup="after0", timeout=("--init-timeout", str(INIT_S))),
    Case("fit-with-mesh-config-differs", ([], []), (3, 3),
         (r"^jaxnet: error: process {k} of 2: the processes' settings differ: "
          r"config\['lr'\] is 0.1 in process 0 and 0.2 in process 1",) * 2, code=_FIT_SCRIPT),
]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _launch(case: Case, root: Path):
    """Start the row's two processes (the second one later for "after0")."""
    port = _free_port()
    held = None
    if case.setup == "taken":
        held = socket.socket()
        held.bind(("127.0.0.1", port))
        held.listen()

    def start(i: int) -> subprocess.Popen:
        k = case.ids[i]
        if case.code is not None:
            cmd = [sys.executable, "-c", textwrap.dedent(case.code), str(port), str(k)]
        else:
            cmd = [sys.executable, "-m", "jaxnet", *COMMON, "--data-dir", "d1",
                   *case.timeout, *case.args[i], "--coordinator-address", f"127.0.0.1:{port}",
                   "--num-processes", "2", "--process-id", str(k)]
        return subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=_env())

    procs = [(start(0), time.monotonic())]
    if case.setup == "after0":
        deadline = time.monotonic() + LIMIT_S / 2
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.1)
    procs.append((start(1), time.monotonic()))
    return procs, held


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every row's two processes, all running together: ``{id: [(rc, stderr, s), ...]}``."""
    root = tmp_path_factory.mktemp("multiprocess")
    _write_idx(root / "d1", 400, 100, seed=0)
    _write_idx(root / "d2", 400, 100, seed=1)
    (root / "exists.json").write_text("{}")
    # "after0" waits for its first process to listen: launched last, the others run meanwhile
    launched = {case.id: _launch(case, root)
                for case in sorted(CASES, key=lambda c: c.setup == "after0")}
    out = {}
    for case_id, (procs, held) in launched.items():
        results = []
        for p, t0 in procs:
            try:
                _, err = p.communicate(timeout=max(1.0, t0 + LIMIT_S - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                err += "\n(killed: no exit within the time limit)"
            results.append((p.returncode, err, time.monotonic() - t0))
        if held is not None:
            held.close()
        out[case_id] = results
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_multi_process_failure_is_one_line_in_every_process(runs, case):
    for k, ((rc, err, _), expected_rc, pattern) in enumerate(
            zip(runs[case.id], case.rc, case.match, strict=True)):
        who = f"process {k} ({case.id})"
        for native in ("Traceback", "terminate called", "Check failure", "SIGABRT", "killed:"):
            assert native not in err, f"{who}: {native!r} in\n{err[-3000:]}"
        lines = [line for line in _jaxnet_lines(err) if not line.startswith("Additional GRPC")]
        assert len(lines) == 1, f"{who}: expected one line, got\n{err[-3000:]}"
        assert re.search(pattern.format(k=case.ids[k]), lines[0]), f"{who}: {lines[0]}"
        assert rc == expected_rc, f"{who}: exit {rc}\n{err[-2000:]}"


_CLAIM = """
import sys, time
from jaxnet.parallel import _lifecycle
_lifecycle._check_port_free(f"127.0.0.1:{sys.argv[1]}")
print("passed", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_second_process_0_is_refused_even_before_the_first_listens():
    """The race of two process-0 starts made deterministic: the first has passed the port
    check but its coordinator does not listen yet (so a probe finds the port free, and
    gRPC's SO_REUSEPORT would let both serve on it); the second must still be refused."""
    port = _free_port()
    first = subprocess.Popen([sys.executable, "-c", _CLAIM, str(port), "120"],
                             stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert first.stdout.readline().strip() == "passed"
        assert not _listening(port)
        second = subprocess.run([sys.executable, "-c", _CLAIM, str(port), "0"],
                                capture_output=True, text=True, timeout=LIMIT_S, env=_env())
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == 1 and "passed" not in second.stdout, second.stdout
    assert (f"coordinator_address: port {port} is in use on this host (another program, an "
            f"earlier run, or another process started as process 0: each process needs its "
            f"own process id)") in second.stderr, second.stderr[-2000:]
