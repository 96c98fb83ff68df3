"""A run server: pay the imports once per DAG, not once per run.

A run spends ≈ 2 s before its first env step on importing torch, gymnasium, MuJoCo and SB3 (issue 17
measured 2.3 s per run, 10 % of the default DAG's core-time). The server imports them once and forks
one child per run; the child is the run, exactly as ``python -m experiments.run ARGS`` would make it
(tests/test_run_server.py: bit-identical results).

    server:  python -m experiments.run_server SOCKET        (the Snakefile's onstart starts one)
    client:  NGRL_RUN_SERVER=SOCKET python -m experiments.run ARGS

The client is ``experiments.run`` itself, still light when it starts: it connects to SOCKET, hands
over its argv, working directory, OMP/MKL/NGRL environment, its own start time and its stdin, stdout
and stderr (SCM_RIGHTS), and waits for the child's exit status, which becomes its own. A signal to
the client is passed on to the child; a client that dies (kill -9) takes its child with it, so
Snakemake's job control works as with a plain process. Where no server answers (none started, a
cluster node) the client runs the run in its own process.

The child counts its start-up from the client's start (``experiments.io.set_process_start``), so a
run's ``process_s`` still covers everything the job paid before training.

The server binds SOCKET before importing (clients that come early wait in the backlog), imports
only (no torch op runs in it: no thread pool to inherit), and exits when told ``quit`` or when the
process that started it is gone.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

ENV_VAR = "NGRL_RUN_SERVER"
PASSED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")   # and every NGRL_* variable
PRELOAD = ("torch", "gymnasium", "mujoco", "stable_baselines3", "sb3_contrib", "experiments.runner",
           "experiments.envs", "algorithms")
_MAX_MSG = 1 << 16


def _recv_line(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(_MAX_MSG)
        if not chunk:
            return b""
        buf += chunk
    return buf


# ---- client ---------------------------------------------------------------------------------------

def delegate(argv: list[str], path: str) -> int | None:
    """Have the server at ``path`` make this run; its exit status, or None where no server answered
    (the caller then runs it itself; nothing has started)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    from experiments import io as _io  # light: os/json/csv only

    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or (k.startswith("NGRL_") and k != ENV_VAR)}
    msg = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env, "started_unix": _io.process_started()}).encode()
    try:
        socket.send_fds(conn, [msg + b"\n"], [0, 1, 2])
        hello = _recv_line(conn)
    except OSError:
        hello = b""
    if not hello:        # the server closed without forking: nothing ran
        conn.close()
        return None
    pid = json.loads(hello)["pid"]

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    before = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        done = _recv_line(conn)
    finally:
        conn.close()
        for s, h in before.items():
            signal.signal(s, h)
    if not done:
        print(f"experiments.run_server: the run's process ({pid}) ended without an exit status", file=sys.stderr)
        return 1
    return int(json.loads(done)["rc"])


# ---- the forked child -----------------------------------------------------------------------------

def _child(conn: socket.socket, req: dict, fds: list[int]) -> None:
    """Become the run: the client's fds, directory, environment and start time; then report rc."""
    for i, fd in enumerate(fds[:3]):
        os.dup2(fd, i)
    for fd in fds:
        os.close(fd)
    sys.stdin = os.fdopen(0, "r", closefd=False)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):   # a plain process's handlers
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(req["cwd"])
    os.environ.update(req["env"])
    os.environ.pop(ENV_VAR, None)
    conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")

    def watch_client():   # the client gone (killed): end the run as a signal to it would
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_client, daemon=True).start()

    from experiments import io as _io
    from experiments.run import main

    _io.set_process_start(float(req["started_unix"]))
    sys.argv = ["experiments.run", *req["argv"]]
    try:
        rc = main(req["argv"])
    except SystemExit as e:      # argparse
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:        # noqa: BLE001 — the run's own traceback, as a plain process prints it
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
    finally:
        os._exit(rc)


# ---- server ---------------------------------------------------------------------------------------

def serve(path: str, preload: tuple[str, ...] = PRELOAD) -> None:
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    parent = os.getppid()
    import importlib

    for name in preload:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children are reaped by the kernel
    listener.settimeout(1.0)
    try:
        while os.getppid() == parent:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            try:
                data, fds, _flags, _addr = socket.recv_fds(conn, _MAX_MSG, 3)
            except OSError:
                conn.close()
                continue
            if data.strip() == b"quit":
                conn.close()
                break
            if len(fds) != 3 or not data.endswith(b"\n"):
                for fd in fds:
                    os.close(fd)
                conn.close()
                continue
            try:
                pid = os.fork()
            except OSError:          # no process to be had: the client makes the run itself
                pid = -1
            if pid == 0:
                listener.close()
                _child(conn, json.loads(data), fds)
            for fd in fds:
                os.close(fd)
            conn.close()
    finally:
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


def stop(path: str) -> bool:
    """Tell the server at ``path`` to exit (runs in flight go on); False where none answered."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        conn.sendall(b"quit\n")
        return True
    except OSError:
        return False
    finally:
        conn.close()


def start(path: str, python: str = sys.executable) -> None:
    """Start a server at ``path`` in the background, with one thread per run's libraries."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(ENV_VAR, None)
    subprocess.Popen([python, "-m", "experiments.run_server", path], env=env, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    serve(sys.argv[1])
