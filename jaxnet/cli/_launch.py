"""``jaxnet launch --nproc N -- COMMAND…``: N local processes of one multi-process run
(like ``torchrun --nproc-per-node N``).

    jaxnet launch --nproc 2 -- jaxnet train mnist --recipe course

Each process gets the environment ``jaxnet.parallel.initialize_distributed()``
(and so ``jaxnet train mnist``) reads when no process flag is given:
``JAXNET_COORDINATOR_ADDRESS=127.0.0.1:PORT`` (a free port, or
``--coordinator-port``), ``JAXNET_NUM_PROCESSES=N`` and ``JAXNET_PROCESS_ID``
0 to N-1. Process 0 keeps the terminal (its output is untouched, its progress
bar too); the others' lines are shown with ``[process K]`` in front, half a
second late, and not at all once the run is failing (a peer that JAX aborts
natively because another died prints a long trace that says nothing new).

SIGINT, SIGTERM and SIGHUP are forwarded to every process. The first process
that fails (a non-zero status, or killed by a signal) ends the others at once
(SIGTERM, then SIGKILL after 5 s) — even one that failed before joining, so
no one waits ``--init-timeout`` — and the launcher's last line names it:
``jaxnet launch: process 0 of 2 died (signal 9, SIGKILL); ended the 1 other``.
Its status is the launcher's (128 + N for a signal); 0 only if all exit 0.
Bad arguments are one line and status 2. Imports no JAX.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from .._proc import SIGNAL_WORDS

__all__ = ["MAX_PROCESSES", "USAGE", "main"]

MAX_PROCESSES = 64  # local processes: each JAX process takes a few hundred MB
GRACE_S = 5.0  # after SIGTERM (or a forwarded signal), how long before SIGKILL
HOLD_S = 0.5  # the other processes' lines wait this long: a failure may make them noise
_POLL_S = 0.05
USAGE = ("usage: jaxnet launch --nproc N [--coordinator-port PORT] -- COMMAND [ARG ...]\n\n"
         "Start N local processes of COMMAND as one multi-process run (like torchrun). Each\n"
         "gets JAXNET_COORDINATOR_ADDRESS=127.0.0.1:PORT, JAXNET_NUM_PROCESSES=N and\n"
         "JAXNET_PROCESS_ID=0..N-1, which jaxnet train mnist and\n"
         "jaxnet.parallel.initialize_distributed() read. Signals are forwarded; the first\n"
         "process that fails ends the others, and its status is the launcher's.\n\n"
         f"  --nproc N               processes to start, 1 to {MAX_PROCESSES}\n"
         "  --coordinator-port PORT process 0's port on 127.0.0.1 (default: a free one)\n")


class _Usage(Exception):
    """Unusable arguments: one line, status 2."""


def _int_option(name: str, text: str, low: int, high: int) -> int:
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise _Usage(f"{name}: expected an int in [{low}, {high}], got {text!r}")
    return int(text)


def _parse(argv: list[str]) -> tuple[int, int | None, list[str]]:
    """``(nproc, port, command)`` from the arguments after ``launch``."""
    options: dict[str, str] = {}
    rest = list(argv)
    while rest and rest[0] != "--":
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name not in ("--nproc", "--coordinator-port"):
            raise _Usage(f"expected --nproc N [--coordinator-port PORT] -- COMMAND, got "
                         f"{word!r} (put the command after --)")
        if not eq:
            if not rest or rest[0] == "--":
                raise _Usage(f"{name}: expected a value")
            value = rest.pop(0)
        options[name] = value
    if "--nproc" not in options:
        raise _Usage("--nproc: expected the number of processes, e.g. --nproc 2")
    nproc = _int_option("--nproc", options["--nproc"], 1, MAX_PROCESSES)
    port = options.get("--coordinator-port")
    port = None if port is None else _int_option("--coordinator-port", port, 1, 65535)
    command = rest[1:]
    if not command:
        raise _Usage("expected a command after --, e.g. jaxnet launch --nproc 2 -- jaxnet "
                     "train mnist")
    if shutil.which(command[0]) is None:
        raise _Usage(f"{command[0]}: command not found (expected a program on PATH or a path "
                     f"to an executable)")
    return nproc, port, command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_setup() -> None:
    """In each child: its own process group, so a signal reaches what it started too (a
    shell script's own children), and (Linux) SIGKILL when the launcher dies."""
    os.setpgid(0, 0)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"died (signal {-returncode}, {name})"
    return f"exited with status {returncode}"


class _Run:
    """The N processes, their relayed output, and the first failure.

    A thread per process waits for it and notes when it ended, so the process named is
    the one that failed first, however late the main loop looks (a peer that JAX aborts
    because another died ends after that one)."""

    def __init__(self, nproc: int, port: int, command: list[str]):
        self.nproc, self.port, self.command = nproc, port, command
        self.procs: list[subprocess.Popen] = []
        self.lines: list[tuple[float, int, bool, str]] = []  # (time, process, stderr?, line)
        self.codes: dict[int, tuple[float, int]] = {}  # process -> (when it ended, status)
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.signum: int | None = None
        self.failing = False
        self.culprit: int | None = None

    # ----------------------------------------------------------------- start and relay

    def start(self) -> None:
        for k in range(self.nproc):
            if self.signum is not None:
                break  # interrupted while starting: start no more
            env = {**os.environ, "JAXNET_COORDINATOR_ADDRESS": f"127.0.0.1:{self.port}",
                   "JAXNET_NUM_PROCESSES": str(self.nproc), "JAXNET_PROCESS_ID": str(k)}
            piped = subprocess.PIPE if k else None  # process 0 keeps the terminal
            if k:
                env["PYTHONUNBUFFERED"] = "1"  # its lines arrive as printed
            self.procs.append(subprocess.Popen(
                self.command, env=env, stdout=piped, stderr=piped,
                stdin=subprocess.DEVNULL if k else None, preexec_fn=_child_setup))
        for k, p in enumerate(self.procs):  # threads after every fork
            jobs = [(self._wait, (k,))]
            if k:
                jobs += [(self._read, (k, p.stdout, False)), (self._read, (k, p.stderr, True))]
            for target, args in jobs:
                t = threading.Thread(target=target, args=args, daemon=True)
                t.start()
                self.threads.append(t)

    def _wait(self, k: int) -> None:
        code = self.procs[k].wait()
        with self.lock:
            self.codes[k] = (time.monotonic(), code)

    def _read(self, k: int, stream, is_err: bool) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.lock:
                self.lines.append((time.monotonic(), k, is_err, line))

    def _flush(self, everything: bool = False) -> None:
        """Print the held lines old enough (all with ``everything``); once the run fails,
        only the failed process's."""
        now = time.monotonic()
        with self.lock:
            ready = [x for x in self.lines if everything or now - x[0] >= HOLD_S]
            self.lines = [x for x in self.lines if x not in ready] if not everything else []
        for _, k, is_err, line in ready:
            if self.failing and k != self.culprit:
                continue
            print(f"[process {k}] {line}", file=sys.stderr if is_err else sys.stdout,
                  flush=True)

    # ----------------------------------------------------------------- signals and ending

    def _running(self) -> list[int]:
        with self.lock:
            return [k for k in range(len(self.procs)) if k not in self.codes]

    def _signal(self, k: int, signum: int) -> None:
        """``signum`` to process ``k``'s whole group (what it started included)."""
        try:
            os.killpg(self.procs[k].pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone: ended meanwhile

    def forward(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            self.failing = True
        for k in self._running():
            self._signal(k, signum)

    def _failure(self) -> int | None:
        """The process that failed first, if any."""
        with self.lock:
            failed = [k for k, (_, code) in self.codes.items() if code != 0]
            return min(failed, key=lambda k: (self.codes[k][0], k)) if failed else None

    def _end_others(self, signum: int | None = signal.SIGTERM) -> int:
        """``signum`` (none if already sent) to every process still running, SIGKILL after
        ``GRACE_S``; the number of processes it reached."""
        running = self._running()
        for k in running if signum else ():
            self._signal(k, signum)
        deadline = time.monotonic() + GRACE_S
        while self._running() and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        for k in range(len(self.procs)):  # also what an ended process left running
            self._signal(k, signal.SIGKILL)
        return len(running)

    def run(self) -> int:
        self.start()
        while self.signum is None and self._failure() is None:
            with self.lock:
                done = len(self.codes) == len(self.procs)
            if done:
                self._finish()
                return 0
            self._flush()
            time.sleep(_POLL_S)
        self.failing = True
        if self.signum is not None:  # forwarded already: wait, then SIGKILL
            self._end_others(signum=None)
            self._finish()
            print(f"jaxnet launch: {SIGNAL_WORDS.get(self.signum, f'signal {self.signum}')}; "
                  f"ended the {len(self.procs)} process{'es' if len(self.procs) != 1 else ''}",
                  file=sys.stderr, flush=True)
            return 128 + self.signum
        time.sleep(_POLL_S)  # a waiter thread may be a moment late: then name the first
        self.culprit = failed = self._failure()
        n = self._end_others()
        self._finish()
        code = self.codes[failed][1]
        others = f"; ended the {n} other{'s' if n != 1 else ''}" if n else ""
        print(f"jaxnet launch: process {failed} of {self.nproc} {_how(code)}{others}",
              file=sys.stderr, flush=True)
        return code if code > 0 else 128 - code

    def _finish(self) -> None:
        for t in self.threads:
            t.join(timeout=5)
        self._flush(everything=True)


def main(argv: list[str]) -> int:
    """Run ``jaxnet launch`` with ``argv`` (the arguments after ``launch``); the status.

    Args:
      argv: list of str, e.g. ``["--nproc", "2", "--", "jaxnet", "train", "mnist"]``.

    Returns:
      int: 0 if every process exited 0; the first failed process's status
      (128 + N for signal N); 128 + N if the launcher got signal N; 2 for bad
      arguments.

    >>> main(["--nproc", "0", "--", "true"])
    2
    """
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE, end="")
        return 0
    try:
        nproc, port, command = _parse(argv)
    except _Usage as e:
        print(f"jaxnet launch: error: {e}", file=sys.stderr, flush=True)
        return 2
    run = _Run(nproc, port or _free_port(), command)
    previous = {s: signal.signal(s, run.forward) for s in SIGNAL_WORDS}
    try:
        return run.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
