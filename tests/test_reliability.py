"""Kill-and-resume, divergence handling, checkpoints outside the declared outputs."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import torch

from algorithms import registry
from algorithms.ppo import PPO
from experiments.runner import execute

ARGS = ["--algo", "ppo", "--env", "Pendulum-v1", "--seed", "4", "--steps", "12288",
        "--set", "n_envs=2", "--set", "n_steps=64", "--set", "batch_size=64", "--set", "n_epochs=2",
        "--set", "norm_obs=true", "--set", "norm_reward=true", "--no-progress", "--checkpoint-secs", "0"]


def rows(path):
    with open(path) as f:
        out = list(csv.DictReader(f))
    for r in out:
        r.pop("wall_s", None)
    return out


def test_sigkill_then_same_command_resumes_to_identical_csvs(tmp_path, root):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    r = subprocess.run([sys.executable, "-m", "experiments.run", *ARGS, "--out", str(ref)], cwd=root,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([sys.executable, "-m", "experiments.run", *ARGS, "--out", str(killed)], cwd=root,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        prog = killed / "progress.csv"
        if (killed / "checkpoint.pt").exists() and prog.exists() and len(prog.read_text().splitlines()) > 30:
            break
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    r = subprocess.run([sys.executable, "-m", "experiments.run", *ARGS, "--out", str(killed)], cwd=root,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resumed from checkpoint" in r.stderr
    assert rows(killed / "progress.csv") == rows(ref / "progress.csv")
    assert rows(killed / "eval.csv") == rows(ref / "eval.csv")
    assert not (killed / "checkpoint.pt").exists()   # removed once summary.json is written


class ExplodingPPO(PPO):
    name = "exploding-ppo"

    def learn(self):
        self.run.log_update(64, {"pg_loss": 0.1})
        with torch.no_grad():
            next(self.policy.parameters()).fill_(float("nan"))
        self.run.log_update(128, {"pg_loss": 0.2})


def test_nan_parameters_stop_the_run_with_status_failed(tmp_path):
    registry.register("exploding-ppo", ExplodingPPO)
    try:
        s = execute("exploding-ppo", "CartPole-v1", 0, 1000, tmp_path / "o", progress_bar=False)
    finally:
        registry.ALGORITHMS.pop("exploding-ppo")
    assert s["status"] == "failed"
    assert "non-finite parameter" in s["error"] and "step 128" in s["error"]
    on_disk = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert on_disk["status"] == "failed"
    assert len(rows(tmp_path / "o" / "progress.csv")) == 2   # the rows up to the divergence are kept


def test_nan_loss_stops_the_run(tmp_path):
    class NanLoss(ExplodingPPO):
        def learn(self):
            self.run.log_update(64, {"value_loss": float("inf")})

    registry.register("nan-loss", NanLoss)
    try:
        s = execute("nan-loss", "CartPole-v1", 0, 1000, tmp_path / "o", progress_bar=False)
    finally:
        registry.ALGORITHMS.pop("nan-loss")
    assert s["status"] == "failed" and "value_loss" in s["error"]


def test_a_crash_mid_training_still_writes_a_failed_summary(tmp_path):
    class Crashing(ExplodingPPO):
        def learn(self):
            self.run.log_update(64, {"pg_loss": 0.1})
            raise RuntimeError("boom")

    registry.register("crashing", Crashing)
    try:
        import pytest
        with pytest.raises(RuntimeError, match="boom"):
            execute("crashing", "CartPole-v1", 0, 1000, tmp_path / "o", progress_bar=False)
    finally:
        registry.ALGORITHMS.pop("crashing")
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["status"] == "failed" and s["error"] == "RuntimeError: boom" and "boom" in s["traceback"]
    assert len(rows(tmp_path / "o" / "progress.csv")) == 1 and (tmp_path / "o" / "eval.csv").exists()
