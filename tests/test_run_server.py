"""The run server (experiments/run_server.py): a forked run is the run a fresh process makes.

Oracle: the same command run as a plain ``python -m experiments.run`` process. Bit-identical
learning (every non-timing column), the same exit status and error text, signals and a killed
client reaching the run, start-up counted from the client's start, and a plain run where no server
answers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import run_server

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"wall_s", "train_s"}


@pytest.fixture
def server():
    d = tempfile.mkdtemp(prefix="ngrl-rs-", dir="/tmp")     # an AF_UNIX path is at most 107 bytes
    path = os.path.join(d, "s.sock")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run_server", path], cwd=ROOT, env=env)
    for _ in range(200):
        if os.path.exists(path):
            break
        time.sleep(0.05)
    yield path, proc
    run_server.stop(path)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _run(out: Path, *extra: str, server: str | None = None, algo: str = "ppo", env_id: str = "CartPole-v1",
         steps: int = 1024, wait: bool = True):
    env = {k: v for k, v in os.environ.items() if k != run_server.ENV_VAR}
    if server:
        env[run_server.ENV_VAR] = server
    cmd = [sys.executable, "-m", "experiments.run", "--algo", algo, "--env", env_id, "--seed", "1", "--steps",
           str(steps), "--out", str(out), "--eval-freq", "512", "--eval-episodes", "2", "--no-progress", *extra]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    so, se = p.communicate(timeout=300)
    return p.returncode, so, se


def _learning(d: Path) -> dict[str, pd.DataFrame]:
    return {f: (lambda t: t[[c for c in t.columns if c not in TIMING]])(pd.read_csv(d / f))
            for f in ("progress.csv", "eval.csv")}


@pytest.mark.parametrize("algo,env_id,steps", [("ppo", "CartPole-v1", 1024), ("trpo", "Pendulum-v1", 1024),
                                               ("sb3-ppo", "CartPole-v1", 512)])
def test_forked_run_is_the_plain_run(server, tmp_path, algo, env_id, steps):
    rc_f, out_f, _ = _run(tmp_path / "viaserver", server=server[0], algo=algo, env_id=env_id, steps=steps)
    rc_p, out_p, _ = _run(tmp_path / "plain", algo=algo, env_id=env_id, steps=steps)
    assert rc_f == rc_p == 0
    assert out_f.split("steps/s")[0] == out_p.split("steps/s")[0]     # the closing line, less its rate
    lf, lp = _learning(tmp_path / "viaserver"), _learning(tmp_path / "plain")
    for f in lf:
        pd.testing.assert_frame_equal(lf[f], lp[f], check_exact=True)
    sf, sp = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("viaserver", "plain"))
    assert sf["final_eval_return"] == sp["final_eval_return"] and sf["status"] == "ok"
    assert sf["hyperparams"] == sp["hyperparams"]
    assert sf["command"].replace("viaserver", "plain").split()[1:] == sp["command"].split()[1:]
    assert server[1].poll() is None          # the server goes on serving


def test_bad_input_same_status_and_message(server, tmp_path):
    for args in (["--set", "nonsense"], ["--set", "learning_rate=abc"]):
        f = _run(tmp_path / "f", *args, server=server[0])
        p = _run(tmp_path / "p", *args)
        assert f[0] == p[0] == 2 and f[2] == p[2] and "error:" in f[2]
    assert not (tmp_path / "f" / "summary.json").exists()
    f = subprocess.run([sys.executable, "-m", "experiments.run", "--algo", "ppo"], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, run_server.ENV_VAR: server[0]})
    assert f.returncode == 2 and "required" in f.stderr            # argparse's exit, through the server


def test_startup_counted_from_the_client(server, tmp_path, monkeypatch, capfd):
    """The child's process_s runs from the start the client reports, not from the fork."""
    from experiments import io as _io

    monkeypatch.setattr(_io, "process_started", lambda: time.time() - 100.0)
    out = tmp_path / "r"
    argv = ["--algo", "ppo", "--env", "CartPole-v1", "--seed", "0", "--steps", "512", "--out", str(out),
            "--eval-freq", "512", "--eval-episodes", "1", "--no-progress"]
    handler = signal.getsignal(signal.SIGTERM)
    assert run_server.delegate(argv, server[0]) == 0
    assert signal.getsignal(signal.SIGTERM) is handler                # the client's handlers are put back
    s = json.loads((out / "summary.json").read_text())
    assert s["process_s"] >= 100.0 > s["wall_s"]
    assert "status=ok" in capfd.readouterr().out                       # the child wrote to the client's stdout


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def _gone(pid: int, timeout: float = 20.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_or_killed_client_ends_the_run(server, tmp_path, sig):
    """Snakemake cancels a job by signalling its process; a client killed outright leaves no orphan run."""
    p = _run(tmp_path / "r", server=server[0], steps=10_000_000, wait=False)
    for _ in range(600):      # the run has begun (its directory is made): the server's one child is the run
        if (tmp_path / "r" / "progress.csv").exists():
            break
        time.sleep(0.05)
    kids = _children(server[1].pid)
    assert len(kids) == 1
    p.send_signal(sig)
    p.wait(20)
    assert p.returncode != 0
    assert _gone(kids[0])
    assert not (tmp_path / "r" / "summary.json").exists()


def test_no_server_runs_in_its_own_process(tmp_path):
    rc, out, _ = _run(tmp_path / "r", server=str(tmp_path / "absent.sock"), steps=512)
    assert rc == 0 and "status=ok" in out
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "ok"


def test_quit_stops_the_server(server):
    path, proc = server
    assert run_server.stop(path)
    proc.wait(10)
    assert not os.path.exists(path)
    assert not run_server.stop(path)
