"""Throughput: our algorithms against the SB3 references on identical hyper-parameters.

    python -m experiments.bench [--envs CartPole-v1 Hopper-v5] [--steps 20000] [--out results/bench/throughput.csv]
    python -m experiments.bench --envs MinAtar/Breakout-v0 MinAtar/SpaceInvaders-v0 --out results/bench/minatar.csv

Each pair trains in this one process, one after the other, one torch thread, on the same
env with the same hyper-parameters (SB3's defaults, normalisation off), timing ``learn()``
alone (evaluation off). Also reports raw env steps/s under random actions: the ceiling.
Ratios measured in one run are what to compare; absolute numbers move with machine load.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from algorithms.base import ConfigError
from experiments.envs import load_catalog, make_env
from experiments.io import write_csv_atomic
from experiments.runner import RunContext, git_commit, resolve_hyperparams, seed_everything

SAME = {"norm_obs": False, "norm_reward": False}
PAIRS = [  # (ours, reference, shared overrides: SB3's defaults made explicit)
    ("ppo", "sb3-ppo", {"n_envs": 1, "n_steps": 2048, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4,
                        "gamma": 0.99, "gae_lambda": 0.95, **SAME}),
    ("trpo", "sb3-trpo", {"n_envs": 1, "n_steps": 2048, "batch_size": 128, "learning_rate": 1e-3, "gamma": 0.99,
                          "gae_lambda": 0.95, "n_critic_updates": 10, "cg_max_steps": 15, "target_kl": 0.01, **SAME}),
    ("acer", None, {}),        # its own settings per env (no SB3 ACER); beside the raw env rate
    ("sb3-a2c", None, {}),     # ACER's comparator in claim C5, its own settings per env
]


def raw_env_steps_per_second(env_id: str, steps: int) -> float:
    env = make_env(load_catalog().get(env_id), train=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t)


def learn_steps_per_second(algo: str, env_id: str, steps: int, overrides: dict, seed: int = 0) -> float:
    spec = dataclasses.replace(load_catalog().get(env_id), eval_freq=10**15, eval_episodes=1)
    cls, cfg = resolve_hyperparams(algo, spec, overrides)
    seed_everything(seed)
    run = RunContext(algo, spec, seed, steps, Path("/nonexistent"), progress_bar=False, checkpoint_secs=float("inf"))
    run.evaluate = lambda step: None   # timing learn() alone
    run.flush = lambda: None
    run.algo = cls(cfg, run)
    t = time.perf_counter()
    run.algo.learn()
    done = run.rows[-1]["step"] if run.rows else steps
    run.close()
    return done / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Hopper-v5"])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--algos", nargs="+", default=[p[0] for p in PAIRS], help="which of ours to measure")
    p.add_argument("--out", default="results/bench/throughput.csv")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for env_id in a.envs:
        raw = raw_env_steps_per_second(env_id, a.steps)
        rows.append({"env": env_id, "algo": "random actions (raw env)", "steps_per_s": round(raw, 1),
                     "reference": "", "reference_steps_per_s": "", "ratio": ""})
        for ours, ref, overrides in (p for p in PAIRS if p[0] in a.algos):
            try:
                s_ours = learn_steps_per_second(ours, env_id, a.steps, overrides)
                s_ref = learn_steps_per_second(ref, env_id, a.steps, overrides) if ref else float("nan")
            except ConfigError as e:   # an algorithm not registered, or the space not handled
                print(f"skip {ours} on {env_id}: {e}")
                continue
            rows.append({"env": env_id, "algo": ours, "steps_per_s": round(s_ours, 1), "reference": ref or "",
                         "reference_steps_per_s": round(s_ref, 1) if ref else "",
                         "ratio": round(s_ours / s_ref, 2) if ref else ""})
            print(rows[-1], flush=True)
    cols = ["env", "algo", "steps_per_s", "reference", "reference_steps_per_s", "ratio"]
    meta = f"# steps={a.steps} torch_threads=1 cpu_count={__import__('os').cpu_count()} " \
           f"python={platform.python_version()} torch={torch.__version__} commit={git_commit()}"
    write_csv_atomic(a.out, rows, cols)
    Path(a.out).with_suffix(".meta").write_text(meta + "\n")
    w = [max(len(str(r[c])) for r in rows + [dict(zip(cols, cols))]) for c in cols]
    for r in [dict(zip(cols, cols))] + rows:
        print("  ".join(str(r[c]).ljust(n) for c, n in zip(cols, w)))


if __name__ == "__main__":
    main()
