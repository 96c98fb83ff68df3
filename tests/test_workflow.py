"""The DAG: dry run of the default matrix, a real smoke run, and adding an algorithm."""
import json
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

IGNORE = shutil.ignore_patterns(".git", ".snakemake", "__pycache__", "runs", "results", ".pytest_cache", "*.egg-info")


@pytest.fixture
def repo(tmp_path, root):
    dst = tmp_path / "repo"
    shutil.copytree(root, dst, ignore=IGNORE)
    (dst / "results").mkdir()
    return dst


def snakemake(repo, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=repo,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("config", [None, "replication.yaml", "paper.yaml"])
def test_dry_run_of_the_shipped_matrices(root, config):
    """Every shipped matrix builds its DAG (job resources for every env family included)."""
    extra = ["--configfile", f"experiments/config/{config}"] if config else []
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--quiet", "rules", *extra],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_bad_config_fails_before_any_job(repo):
    cfg = yaml.safe_load((repo / "experiments/config/smoke.yaml").read_text())
    cfg["results"] = "results"
    for bad, msg in [({"seeds": []}, "seeds"), ({"algorithms": ["ppo", "nope"]}, "unknown algorithm 'nope'"),
                     ({"envs": ["Nope-v9"]}, "unknown env 'Nope-v9'"), ({"profile": "huge"}, "profile")]:
        (repo / "bad.yaml").write_text(yaml.safe_dump({**cfg, **bad}))
        r = snakemake(repo, "--configfile", "bad.yaml", timeout=300)
        assert r.returncode != 0
        assert msg in r.stdout + r.stderr, (bad, r.stderr[-2000:])
        assert not (repo / "results" / "runs").exists()


def test_smoke_dag_runs_then_is_up_to_date(repo):
    """Every algorithm of the smoke matrix on its classic-control env, then the analysis; with
    ``compress_logs`` every run keeps progress.csv.gz only, and the tables still read it."""
    cfg = yaml.safe_load((repo / "experiments/config/smoke.yaml").read_text())
    cfg["envs"] = ["CartPole-v1"]
    cfg["results"] = "results"
    cfg["compress_logs"] = True
    (repo / "ci.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(repo, "--configfile", "ci.yaml")
    assert r.returncode == 0, r.stderr[-4000:]
    summaries = list((repo / "results" / "runs").glob("*/*/*/summary.json"))
    assert len(summaries) >= len(cfg["algorithms"]) * len(cfg["seeds"])
    for s in summaries:
        assert json.loads(s.read_text())["status"] == "ok", s
        assert (s.parent / "progress.csv.gz").exists() and not (s.parent / "progress.csv").exists(), s.parent
    assert (repo / "results" / "tables" / "runs.csv").exists()
    import pandas as pd
    updates = pd.read_parquet(repo / "results" / "tables" / "updates.parquet")
    assert set(updates["algo"]) >= set(cfg["algorithms"]) - {"sb3-a2c", "sb3-ppo", "sb3-trpo"}
    again = snakemake(repo, "--configfile", "ci.yaml", "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


NEW_ALGO = '''
"""Random search in parameter space — the README's example of adding an algorithm."""
import dataclasses

import numpy as np
import torch

from algorithms.base import Algorithm, BaseConfig
from algorithms.core.nets import ActorCritic


@dataclasses.dataclass
class RandomSearchConfig(BaseConfig):
    n_steps: int = 128
    noise: float = 0.1


class RandomSearch(Algorithm):
    name = "random-search"
    Config = RandomSearchConfig

    def __init__(self, cfg, run):
        super().__init__(cfg, run)
        self.env = run.make_env(cfg.n_envs)
        self.policy = ActorCritic(self.env.single_observation_space, self.env.single_action_space, cfg.net_arch)

    def predict(self, obs):
        with torch.no_grad():
            return self.policy.dist(torch.as_tensor(obs, dtype=torch.float32)).mode().numpy()

    def learn(self):
        step = 0
        while step < self.run.total_steps:
            for _ in range(self.cfg.n_steps):
                self.env.step(self.predict(self.env.obs))
            step += self.cfg.n_steps * self.cfg.n_envs
            with torch.no_grad():
                for p in self.policy.parameters():
                    p.add_(self.cfg.noise * torch.randn_like(p))
            self.run.log_update(step, {"noise": self.cfg.noise})
'''


def test_adding_an_algorithm_is_one_file_and_one_registry_line(repo):
    (repo / "algorithms" / "random_search.py").write_text(textwrap.dedent(NEW_ALGO))
    reg = repo / "algorithms" / "registry.py"
    text = reg.read_text()
    anchor = "ALGORITHMS: dict[str, Target] = {\n"
    assert anchor in text
    reg.write_text(text.replace(anchor, anchor + '    "random-search": "algorithms.random_search:RandomSearch",\n'))
    r = subprocess.run([sys.executable, "-m", "experiments.run", "--algo", "random-search", "--env", "CartPole-v1",
                        "--seed", "0", "--steps", "512", "--out", "runs/rs", "--set", "noise=0.2"],
                       cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((repo / "runs/rs/summary.json").read_text())["hyperparams"]["noise"] == 0.2
    cfg = {"profile": "smoke", "seeds": [0], "algorithms": ["random-search"], "envs": ["CartPole-v1"], "toys": False}
    (repo / "mine.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(repo, "--configfile", "mine.yaml")
    assert r.returncode == 0, r.stderr[-4000:]
    assert (repo / "results/runs/random-search/CartPole-v1/0/summary.json").exists()


def clean_clone(root, dst):
    """The files a clean clone of the working tree has: tracked, plus untracked but not ignored."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if (root / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / f, dst / f)
    return dst


def test_adding_an_algorithm_trains_only_its_runs(root, tmp_path):
    """Issue 16: the default matrix's committed per-run outputs are what the DAG sees as done, so
    on a clean clone a newly registered algorithm added to the matrix makes Snakemake schedule
    its own training runs and nothing else's (the analysis is redrawn with it)."""
    repo = clean_clone(root, tmp_path / "repo")
    cfg_path = repo / "experiments/config/default.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    committed = list((repo / cfg["results"] / "runs").glob("*/*/*/summary.json"))
    assert committed, "the default snapshot's per-run outputs are not committed"

    before = snakemake(repo, "-n", timeout=300)
    assert before.returncode == 0, before.stderr[-3000:]
    for rule in ("train", "sweep_run"):
        assert f"rule {rule}:" not in before.stdout + before.stderr, f"a clean clone re-runs committed {rule} jobs"

    (repo / "algorithms" / "random_search.py").write_text(textwrap.dedent(NEW_ALGO))
    reg = repo / "algorithms" / "registry.py"
    anchor = "ALGORITHMS: dict[str, Target] = {\n"
    line = '    "random-search": "algorithms.random_search:RandomSearch",\n'
    reg.write_text(reg.read_text().replace(anchor, anchor + line))
    # the matrix's own `algorithms:` line (more_seeds entries also say "algorithms: [")
    cfg_path.write_text(cfg_path.read_text().replace("\nalgorithms: [", "\nalgorithms: [random-search, ", 1))
    deleted = sorted(committed)[0]            # a run deleted to be retrained is retrained too
    shutil.rmtree(deleted.parent)
    r = snakemake(repo, "-n", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    jobs = re.findall(r"rule \w+:\n(?:.*\n)*?\s+wildcards: algo=([^,]+), env=([^,]+),.*seed=(\d+)", out)
    trained = {(a, e, int(s)) for a, e, s in jobs}
    expected = {("random-search", e, s) for e in cfg["envs"] for s in cfg["seeds"]}   # it acts in both spaces
    expected.add((deleted.parts[-4], deleted.parts[-3], int(deleted.parts[-2])))
    assert trained == expected, sorted(trained ^ expected)[:10]
    assert "analysis_claims" in out and "calibration" in out


def test_committed_runs_made_with_other_settings_stop_the_dag(root, tmp_path):
    """A committed run whose settings no longer match what the matrix resolves (here: a changed
    hyperparams.yaml entry) is named, not silently counted as done."""
    repo = clean_clone(root, tmp_path / "repo")
    hp = repo / "experiments/config/hyperparams.yaml"
    text = hp.read_text()
    old = "CartPole-v1: {n_envs: 8, n_steps: 32, batch_size: 256, gae_lambda: 0.8, gamma: 0.98, n_epochs: 20,"
    assert old in text
    hp.write_text(text.replace(old, old.replace("n_epochs: 20", "n_epochs: 10")))
    r = snakemake(repo, "-n", timeout=300)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "made with other settings" in out and "runs/ppo/CartPole-v1/0: n_epochs" in out


def test_run_manifest_changes_exactly_when_tables_must_be_redrawn(tmp_path):
    """Snakemake reruns the tables only when an input's content changes: the manifest changes when a
    run is added or missing (each time it is found missing), and not once everything is there."""
    from experiments.dag_locks import sync_manifest
    m, runs = tmp_path / "MATRIX", [tmp_path / f"r{i}" / "summary.json" for i in range(2)]
    entries = ["r0 100", "r1 100"]
    assert sync_manifest(m, entries, runs)                       # new: both missing
    for r in runs:
        r.parent.mkdir()
        r.write_text("{}")
    first = m.read_text()
    assert not sync_manifest(m, entries, runs) and m.read_text() == first   # complete: left alone, up to date
    runs[1].unlink()
    assert sync_manifest(m, entries, runs) and "r1" in m.read_text().split("# missing", 1)[1]
    runs[1].write_text("{}")
    assert not sync_manifest(m, entries, runs)
    runs[1].unlink()                                             # the same run deleted again: redrawn again
    assert sync_manifest(m, entries, runs)
    runs[1].write_text("{}")
    assert sync_manifest(m, entries + ["r2 100"], runs)          # a new run in the matrix
