"""The fault battery (``pytest -m faults``): SIGKILL at random points of runs of three
algorithms, a damaged checkpoint on top, and a hard-killed DAG; after each, the same command
again. The oracle is an uninterrupted run (or DAG) of the same command: its progress.csv and
eval.csv (``wall_s`` excluded) must come out identical, with no checkpoint left behind.

Each test adds the faults it injected to ``INJECTED``; the session prints the total."""
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.faults

INJECTED: dict[str, int] = {}
SMALL = {
    # TRPO with observation + reward normalisation (running statistics in the checkpoint)
    "trpo": ("Pendulum-v1", 8192, ["n_envs=2", "n_steps=128", "norm_obs=true", "norm_reward=true"]),
    # PPO with several epochs of minibatches (optimiser state, RNG of the shuffles)
    "ppo": ("Pendulum-v1", 8192, ["n_envs=2", "n_steps=64", "batch_size=64", "n_epochs=2"]),
    # ACER with replay from early on (the replay memory and its sampling RNG in the checkpoint)
    "acer": ("CartPole-v1", 6000, ["replay_start=400", "replay_ratio=2"]),
    # continuous ACER: the written-out update on flat θ/θ_avg, flat RMSProp, the NumPy actor's stream
    "acer@Pendulum-v1": ("Pendulum-v1", 4000, ["replay_start=400", "replay_ratio=2", "norm_obs=true"]),
    # ACKTR: Kronecker factors (running averages) and the momentum buffer in the checkpoint
    "acktr": ("Pendulum-v1", 6000, ["n_envs=2", "n_steps=64"]),
}


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        out = list(csv.DictReader(f))
    for r in out:
        r.pop("wall_s", None)
        r.pop("train_s", None)
    return out


def n_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def count(kind: str, n: int = 1) -> None:
    INJECTED[kind] = INJECTED.get(kind, 0) + n


@pytest.fixture(scope="module", autouse=True)
def report_faults():
    yield
    total = sum(INJECTED.values())
    print(f"\nfault battery: {total} faults injected ({INJECTED})")


def run_cmd(algo: str, out: Path) -> list[str]:
    env_id, steps, sets = SMALL[algo]
    return [sys.executable, "-m", "experiments.run", "--algo", algo.split("@")[0], "--env", env_id, "--seed", "3",
            "--steps", str(steps), "--out", str(out), "--no-progress", "--checkpoint-secs", "0",
            *[a for s in sets for a in ("--set", s)]]


def kill_when(proc: subprocess.Popen, progress: Path, at_rows: int, timeout: float = 300) -> bool:
    """SIGKILL ``proc`` once ``progress`` has ``at_rows`` rows. False if it finished first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if n_rows(progress) >= at_rows:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_kills_at_random_points_and_a_damaged_checkpoint_lose_nothing(tmp_path, root, algo):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    r = subprocess.run(run_cmd(algo, ref), cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    total = n_rows(ref / "progress.csv")
    rng = random.Random(f"faults-{algo}")
    points = sorted(rng.sample(range(2, total - 2), 3))      # three kills at random updates
    messages, truncated = [], False
    for i, at in enumerate(points):
        p = subprocess.Popen(run_cmd(algo, out), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not kill_when(p, out / "progress.csv", at):
            pytest.fail(f"{algo}: the run ended before row {at}")
        messages.append(p.stderr.read())
        p.stderr.close()
        count("sigkill")
        assert not (out / "summary.json").exists()
        if i == 1 and (out / "checkpoint.pt").exists():          # then a damaged newest checkpoint
            data = (out / "checkpoint.pt").read_bytes()
            (out / "checkpoint.pt").write_bytes(data[: rng.randrange(1, len(data))])
            count("truncated checkpoint")
            truncated = True
    r = subprocess.run(run_cmd(algo, out), cwd=root, capture_output=True, text=True, timeout=600)
    messages.append(r.stderr)
    assert r.returncode == 0, r.stderr
    said = "\n".join(messages)
    assert "Traceback" not in said
    assert "resumed from checkpoint" in said
    if truncated:
        assert "checkpoint.pt is damaged" in said
    assert rows(out / "progress.csv") == rows(ref / "progress.csv")
    assert rows(out / "eval.csv") == rows(ref / "eval.csv")
    assert not list(out.glob("checkpoint*.pt")) and not list(out.glob(".*.tmp"))   # *.damaged kept


# --- a hard-killed DAG --------------------------------------------------------------------------

IGNORE = shutil.ignore_patterns(".git", ".snakemake", "__pycache__", "runs", "results", ".pytest_cache", "*.egg-info")
DAG = {"profile": "smoke", "seeds": [0], "algorithms": ["ppo", "trpo"], "envs": ["Pendulum-v1"],
       "steps": {"Pendulum-v1": 12288}, "eval_episodes": 2, "toys": False,
       "set": {"ppo": {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2},
               "trpo": {"n_envs": 2, "n_steps": 128}}}


def test_hard_killed_dag_resumes_with_the_same_command(tmp_path, root):
    """kill -9 of snakemake's whole process group mid-run, then the same command: it must finish
    (default workflow profile: rerun-incomplete; stale locks cleared) with the interrupted runs
    resumed from their checkpoints, and equal the uninterrupted DAG's CSVs."""
    repo = tmp_path / "repo"
    shutil.copytree(root, repo, ignore=IGNORE)
    env = {**os.environ, "NGRL_CHECKPOINT_SECS": "0"}
    runs = [f"{{res}}/runs/{a}/Pendulum-v1/0" for a in DAG["algorithms"]]

    def command(res: str) -> list[str]:
        (repo / f"{res}.yaml").write_text(yaml.safe_dump({**DAG, "results": res}))
        return [sys.executable, "-m", "snakemake", *[f"{r.format(res=res)}/summary.json" for r in runs],
                "--cores", "2", "--configfile", f"{res}.yaml"]

    r = subprocess.run(command("ref"), cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Using workflow specific profile profiles/default" in r.stderr
    p = subprocess.Popen(command("results"), cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    first = repo / runs[0].format(res="results")
    dirs = [repo / r.format(res="results") for r in runs]
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:   # mid-run, and every run checkpointed (or finished)
        if (first / "checkpoint.pt").exists() and n_rows(first / "progress.csv") >= 40 and all(
                (d / "checkpoint.pt").exists() or (d / "summary.json").exists() for d in dirs):
            break
        time.sleep(0.05)
    assert p.poll() is None, "the DAG finished before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)          # snakemake and its jobs: one process group
    p.wait()
    count("kill -9 of the DAG")
    interrupted = [d for d in (repo / r.format(res="results") for r in runs) if not (d / "summary.json").exists()]
    assert interrupted and all((d / "checkpoint.pt").exists() for d in interrupted)
    assert list((repo / ".snakemake" / "locks").glob("*.lock")), "the kill should leave snakemake's locks"
    again = subprocess.run(command("results"), cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "removed stale lock" in again.stderr
    for d in interrupted:
        log = (repo / "results" / "logs" / d.relative_to(repo / "results" / "runs")).with_suffix(".log").read_text()
        assert "resumed from checkpoint.pt at step" in log and "at step 0" not in log, log
    for r_ in runs:
        mine, ref = repo / r_.format(res="results"), repo / r_.format(res="ref")
        assert rows(mine / "progress.csv") == rows(ref / "progress.csv")
        assert rows(mine / "eval.csv") == rows(ref / "eval.csv")
        assert not list(mine.glob("checkpoint*"))
