"""Claim C3's J(π) stream: evaluating the sampled policy changes nothing in training, is itself
reproducible, a second stream beside the main evaluation gives exactly the numbers of a run with
that stream alone (and survives a kill), and the per-run drop fraction counts exactly the blocks
where J(π) fell."""
import csv
import json

import numpy as np
import pandas as pd
import pytest

from algorithms.base import ConfigError
from analysis import pipeline
from experiments import matrix, monotonic
from experiments.runner import execute

SMALL = {"n_envs": 2, "n_steps": 64, "batch_size": 128, "cg_max_steps": 5, "n_critic_updates": 2}


def read(p):
    with open(p) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("wall_s", None)
        r.pop("train_s", None)
    return rows


@pytest.mark.parametrize("algo", ["trpo", "sb3-a2c"])
def test_stochastic_evaluation_leaves_training_unchanged(tmp_path, algo):
    sets = SMALL if algo == "trpo" else {"n_envs": 2}
    det = execute(algo, "CartPole-v1", 4, 1024, tmp_path / "det", sets, progress_bar=False, eval_freq=128)
    sto = execute(algo, "CartPole-v1", 4, 1024, tmp_path / "sto", sets, progress_bar=False, eval_freq=128,
                  eval_policy="stochastic")
    execute(algo, "CartPole-v1", 4, 1024, tmp_path / "again", sets, progress_bar=False, eval_freq=128,
              eval_policy="stochastic")
    assert read(tmp_path / "det" / "progress.csv") == read(tmp_path / "sto" / "progress.csv")   # training
    assert read(tmp_path / "sto" / "eval.csv") == read(tmp_path / "again" / "eval.csv")         # seeded draws
    assert read(tmp_path / "sto" / "eval.csv") != read(tmp_path / "det" / "eval.csv")           # sampled ≠ mode
    assert sto["eval"]["policy"] == "stochastic" and "policy" not in det["eval"]
    steps = [int(r["step"]) for r in read(tmp_path / "sto" / "eval.csv")]
    assert (np.diff([s // 128 for s in steps]) == 1).all()    # one estimate per block of 128 env steps


@pytest.mark.parametrize("algo", ["trpo", "sb3-a2c"])
def test_the_J_stream_beside_the_main_evaluation_is_the_stochastic_run_itself(tmp_path, algo):
    """One run, two streams: eval.csv is the plain run's, j_eval.csv the stochastic-only run's (same
    block, episodes and seeds), progress.csv both of theirs; the identity records the stream."""
    sets = SMALL if algo == "trpo" else {"n_envs": 2}
    kw = dict(progress_bar=False)
    plain = execute(algo, "CartPole-v1", 3, 1024, tmp_path / "plain", sets, eval_freq=320, **kw)
    execute(algo, "CartPole-v1", 3, 1024, tmp_path / "sto", sets, eval_freq=128, eval_episodes=8,
            eval_policy="stochastic", **kw)
    both = execute(algo, "CartPole-v1", 3, 1024, tmp_path / "both", sets, eval_freq=320, j_eval=(128, 8), **kw)
    assert read(tmp_path / "both" / "eval.csv") == read(tmp_path / "plain" / "eval.csv")
    assert read(tmp_path / "both" / "j_eval.csv") == read(tmp_path / "sto" / "eval.csv")
    assert read(tmp_path / "both" / "progress.csv") == read(tmp_path / "plain" / "progress.csv")
    assert both["j_eval"] == {"freq": 128, "episodes": 8, "policy": "stochastic"} and "j_eval" not in plain
    assert both["eval"] == plain["eval"]
    assert not (tmp_path / "plain" / "j_eval.csv").exists()


def test_a_killed_run_resumes_both_streams(tmp_path, kill_and_resume):
    args = ["--algo", "trpo", "--env", "CartPole-v1", "--seed", "2", "--steps", "8192", "--set", "n_envs=2",
            "--set", "n_steps=64", "--set", "batch_size=128", "--set", "cg_max_steps=5", "--set", "n_critic_updates=2",
            "--eval-freq", "640",
            "--j-eval-freq", "256", "--j-eval-episodes", "4", "--no-progress", "--checkpoint-secs", "0"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    kill_and_resume(args, ref, killed,
                    lambda d: (d / "j_eval.csv").exists() and len((d / "j_eval.csv").read_text().splitlines()) > 8)
    for f in ("progress.csv", "eval.csv", "j_eval.csv"):
        assert read(killed / f) == read(ref / f), f


def test_algorithm_without_sampling_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="predict_stochastic"):
        execute("acer", "CartPole-v1", 0, 512, tmp_path / "x", progress_bar=False, eval_policy="stochastic")
    with pytest.raises(ConfigError, match="predict_stochastic"):
        execute("acer", "CartPole-v1", 0, 512, tmp_path / "y", progress_bar=False, j_eval=(256, 4))
    with pytest.raises(ConfigError, match="positive"):
        execute("trpo", "CartPole-v1", 0, 512, tmp_path / "z", progress_bar=False, j_eval=(0, 4))
    assert not any((tmp_path / d).exists() for d in "xyz")
    from experiments.run import main
    with pytest.raises(SystemExit):   # episodes without a block: refused, not ignored
        main(["--algo", "trpo", "--env", "CartPole-v1", "--seed", "0", "--steps", "64", "--out", str(tmp_path / "w"),
              "--j-eval-episodes", "4"])
    assert not (tmp_path / "w").exists()


def test_the_J_stream_runs_are_runs_of_the_matrix_with_their_seeds_added():
    cfg = {"profile": "default", "results": "R", "seeds": [0], "algorithms": ["ppo", "trpo", "acer"],
           "envs": ["CartPole-v1", "Pendulum-v1"],
           "more_seeds": [{"algorithms": ["acer"], "envs": ["CartPole-v1"], "seeds": [5, 6]},
                          {"seeds": [9]}],
           "monotonic": {"envs": ["CartPole-v1"], "algorithms": ["trpo"], "seeds": [0, 1, 2]}}
    runs = {(r.algo, r.env): [] for r in matrix.expand(cfg, check_deps=False)}
    for r in matrix.expand(cfg, check_deps=False):
        runs[(r.algo, r.env)].append(r.seed)
    assert runs == {("ppo", "CartPole-v1"): [0, 9], ("trpo", "CartPole-v1"): [0, 1, 2, 9],
                    ("acer", "CartPole-v1"): [0, 5, 6, 9], ("ppo", "Pendulum-v1"): [0, 9],
                    ("trpo", "Pendulum-v1"): [0, 9], ("acer", "Pendulum-v1"): [0, 9]}
    mono = monotonic.expand(cfg)
    assert set(mono) == {f"R/runs/trpo/CartPole-v1/{s}" for s in (0, 1, 2)}
    assert mono["R/runs/trpo/CartPole-v1/1"].args() == "--j-eval-freq 1024 --j-eval-episodes 32"
    bad = {**cfg, "exclude": [{"algo": "trpo", "env": "CartPole-v1"}]}
    with pytest.raises(ConfigError, match="trpo on CartPole-v1"):
        matrix.expand(bad, check_deps=False)
    with pytest.raises(ConfigError, match="more_seeds"):
        matrix.expand({**cfg, "more_seeds": [{"algorithms": ["npg"], "seeds": [3]}]}, check_deps=False)
    with pytest.raises(ConfigError, match="adds nothing"):   # acer is excluded on Pendulum-v1 here
        matrix.expand({**cfg, "exclude": [{"algo": "acer", "env": "Pendulum-v1"}],
                       "more_seeds": [{"algorithms": ["acer"], "envs": ["Pendulum-v1"], "seeds": [3]}]},
                      check_deps=False)
    with pytest.raises(ConfigError, match="predict_stochastic"):
        matrix.expand({**cfg, "monotonic": {**cfg["monotonic"], "algorithms": ["acer"]}}, check_deps=False)


def test_a_finished_run_without_its_J_stream_is_stale(tmp_path):
    cfg = {"profile": "default", "results": str(tmp_path), "seeds": [0], "algorithms": ["trpo"],
           "envs": ["CartPole-v1"], "steps": {"CartPole-v1": 512},
           "monotonic": {"envs": ["CartPole-v1"], "algorithms": ["trpo"], "seeds": [0], "episodes": 4}}
    runs = {r.out_dir(str(tmp_path)): r for r in matrix.expand(cfg, check_deps=False)}
    mono = {d: r.identity() for d, r in monotonic.expand(cfg).items()}
    (d,) = runs
    execute("trpo", "CartPole-v1", 0, 512, d, SMALL, progress_bar=False)      # without the stream
    assert matrix.stale_runs(runs, {**cfg, "set": {"trpo": SMALL}}, j_eval=mono) == [
        f"{d}: j_eval (claim C3's J(π) stream)"]


def test_blocks_are_the_largest_update_and_every_algorithm_shares_them():
    cfg = {"profile": "default", "results": "R", "monotonic": {"envs": ["CartPole-v1", "Pendulum-v1"],
           "algorithms": ["trpo", "ppo"], "seeds": [0, 1], "episodes": 16}}
    runs = monotonic.expand(cfg)
    assert len(runs) == 8 and {r.episodes for r in runs.values()} == {16}
    # CartPole-v1: TRPO 512·2 > PPO 32·8; Pendulum-v1: PPO 1024·4 > TRPO 1024·2
    assert {(r.env, r.block) for r in runs.values()} == {("CartPole-v1", 512 * 2), ("Pendulum-v1", 1024 * 4)}
    assert "R/runs/ppo/Pendulum-v1/1" in runs
    cfg["monotonic"]["block_of"] = "trpo"
    assert {(r.env, r.block) for r in monotonic.expand(cfg).values()} == {("CartPole-v1", 1024), ("Pendulum-v1", 2048)}


def test_drop_fraction_counts_the_blocks_where_J_fell(tmp_path):
    """J estimates at steps 100 (first update, dropped), 1024, 2048, …: drops beyond 10 % of
    (threshold − random) of CartPole-v1 = 45.13 are counted against a direct count."""
    J = [300.0, 100.0, 200.0, 150.0, 300.0, 250.0, 249.0, 400.0]   # the first (step 100) is not a block
    steps = [100] + [1024 * k for k in range(1, len(J))]
    d = tmp_path / "r"
    d.mkdir()
    pd.DataFrame({"step": steps, "return_mean": J, "return_std": 1.0, "n_episodes": 32}).to_csv(d / "j_eval.csv",
                                                                                                index=False)
    pd.DataFrame({"step": steps, "return_mean": 0.0, "return_std": 1.0, "n_episodes": 5}).to_csv(d / "eval.csv",
                                                                                                 index=False)
    pd.DataFrame({"step": steps, "wall_s": 1.0, "episode_return": J, "episodes": 1}).to_csv(d / "progress.csv",
                                                                                           index=False)
    (d / "summary.json").write_text(json.dumps({"status": "ok", "total_steps": steps[-1], "algo": "trpo",
                                                "env_id": "CartPole-v1", "seed": 0}))
    m = pipeline.make_monotonic([{"run_dir": str(d), "algo": "trpo", "env": "CartPole-v1", "seed": 0,
                                  "total_steps": steps[-1], "block": 1024}],
                                pipeline.claims.load_config(), str(tmp_path / "m.csv"))
    tol = 0.1 * (475 - 23.7)
    blocks = np.diff(J[1:])
    assert m.loc[0, "n_deltas"] == len(blocks) == 6
    assert m.loc[0, "drop_frac"] == pytest.approx(np.mean(blocks < -tol))   # 200→150 and 300→250: 2 of 6


def test_the_dag_gives_the_C3_runs_their_J_stream_and_only_them(tmp_path, root):
    """The train jobs of the `monotonic:` runs carry --j-eval-freq (a rule file that re-bound MONO
    once dropped it for every run); the matrix's other runs do not."""
    import re
    import subprocess
    import sys

    import yaml
    cfg = {"profile": "smoke", "seeds": [0], "algorithms": ["trpo", "ppo"], "envs": ["CartPole-v1"],
           "results": str(tmp_path / "r"), "toys": False,
           "monotonic": {"envs": ["CartPole-v1"], "algorithms": ["trpo"], "seeds": [0, 1], "episodes": 4}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--configfile",
                        str(tmp_path / "c.yaml")], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    cmds = re.findall(r"experiments\.run --algo (\S+) .*?--seed (\d+) (.*?)--no-progress", r.stdout + r.stderr)
    got = {(a, int(s)): "--j-eval-freq 1024 --j-eval-episodes 4" in rest for a, s, rest in cmds}
    assert got == {("trpo", 0): True, ("trpo", 1): True, ("ppo", 0): False}, got
