"""Claim C3's true-objective runs: evaluating the sampled policy changes nothing in training, is
itself reproducible, and the per-run drop fraction counts exactly the blocks where J(π) fell."""
import csv
import json

import numpy as np
import pandas as pd
import pytest

from algorithms.base import ConfigError
from analysis import pipeline
from experiments import monotonic
from experiments.runner import execute

SMALL = {"n_envs": 2, "n_steps": 64, "batch_size": 128, "cg_max_steps": 5, "n_critic_updates": 2}


def read(p):
    with open(p) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("wall_s", None)
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


def test_algorithm_without_sampling_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="predict_stochastic"):
        execute("acer", "CartPole-v1", 0, 512, tmp_path / "x", progress_bar=False, eval_policy="stochastic")
    assert not (tmp_path / "x").exists()


def test_blocks_are_the_largest_update_and_every_algorithm_shares_them():
    cfg = {"profile": "default", "results": "R", "monotonic": {"envs": ["CartPole-v1", "Pendulum-v1"],
           "algorithms": ["trpo", "ppo"], "seeds": [0, 1], "episodes": 16}}
    runs = monotonic.expand(cfg)
    assert len(runs) == 8 and {r.episodes for r in runs.values()} == {16}
    # CartPole-v1: TRPO 512·2 > PPO 32·8; Pendulum-v1: PPO 1024·4 > TRPO 1024·2
    assert {(r.env, r.block) for r in runs.values()} == {("CartPole-v1", 512 * 2), ("Pendulum-v1", 1024 * 4)}
    assert "R/monotonic/ppo/Pendulum-v1/1" in runs
    cfg["monotonic"]["block_of"] = "trpo"
    assert {(r.env, r.block) for r in monotonic.expand(cfg).values()} == {("CartPole-v1", 1024), ("Pendulum-v1", 2048)}


def test_drop_fraction_counts_the_blocks_where_J_fell(tmp_path):
    """J estimates at steps 100 (first update, dropped), 1024, 2048, …: drops beyond 10 % of
    (threshold − random) of CartPole-v1 = 45.13 are counted against a direct count."""
    J = [300.0, 100.0, 200.0, 150.0, 300.0, 250.0, 249.0, 400.0]   # the first (step 100) is not a block
    steps = [100] + [1024 * k for k in range(1, len(J))]
    d = tmp_path / "r"
    d.mkdir()
    pd.DataFrame({"step": steps, "return_mean": J, "return_std": 1.0, "n_episodes": 32}).to_csv(d / "eval.csv",
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
