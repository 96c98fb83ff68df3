"""Throughput: our algorithms against the SB3 references on identical hyper-parameters.

    python -m experiments.bench [--envs CartPole-v1 Hopper-v5] [--steps 20000] [--out results/bench/throughput.csv]
    python -m experiments.bench --envs MinAtar/Breakout-v0 MinAtar/SpaceInvaders-v0 --out results/bench/minatar.csv

Each pair trains in this one process, one after the other, one torch thread, on the same
env with the same hyper-parameters (SB3's defaults, normalisation off), timing ``learn()``
alone (evaluation off). Also reports raw env steps/s under random actions: the ceiling.
Each measurement is repeated ``--repeats`` times (default 5), alternating which of the pair goes
first, with the raw env rate measured before and after the pair in every repeat (their mean is the
repeat's ceiling); the table gives medians and min–max, and
ratios are taken within a repeat (paired), so one lucky run does not make a ratio. Absolute
numbers move with machine load; the ratios are what to compare. ``GOALS`` (issue 17) are checked
in the ``met`` column.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path

# One thread per job for NumPy's BLAS too, as for torch: OpenBLAS reads these when NumPy loads it, so they are
# set before anything imports NumPy (the DAG's rules set the same); it would otherwise spread ACER's NumPy
# products over every core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

from algorithms.base import ConfigError  # noqa: E402
from experiments.envs import load_catalog, make_env  # noqa: E402
from experiments.io import write_csv_atomic  # noqa: E402
from experiments.runner import RunContext, git_commit, machine_info, resolve_hyperparams, seed_everything  # noqa: E402

SAME = {"norm_obs": False, "norm_reward": False}
SB3_TRPO = {"n_envs": 1, "n_steps": 2048, "batch_size": 128, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.95,
            "n_critic_updates": 10, "cg_max_steps": 15, "target_kl": 0.01, **SAME}   # sb3-contrib TRPO's defaults
PAIRS = [  # (ours, reference, shared overrides: SB3's defaults made explicit)
    ("ppo", "sb3-ppo", {"n_envs": 1, "n_steps": 2048, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4,
                        "gamma": 0.99, "gae_lambda": 0.95, **SAME}),
    ("trpo", "sb3-trpo", SB3_TRPO),
    ("npg", "sb3-trpo", SB3_TRPO),      # NPG: TRPO's direction without the line search, the same reference
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


# The goals of issue 17, as data: (env, ours) -> {column: minimum}. "ratio" is ours / reference and
# "of_raw" ours / the raw env rate, each the median over repeats of a ratio measured within one repeat.
GOALS: dict[tuple[str, str], dict[str, float]] = {
    ("CartPole-v1", "ppo"): {"ratio": 5.0},
    ("CartPole-v1", "trpo"): {"ratio": 6.0},
    ("CartPole-v1", "npg"): {"ratio": 6.0},
    ("Hopper-v5", "ppo"): {"ratio": 3.0, "of_raw": 0.65},
    ("Hopper-v5", "acer"): {"of_raw": 0.70},
    ("Hopper-v5", "trpo"): {"of_raw": 0.85},
    ("Hopper-v5", "npg"): {"of_raw": 0.85},
}
COLS = ["env", "algo", "steps_per_s", "steps_per_s_range", "reference", "reference_steps_per_s",
        "ratio", "ratio_range", "of_raw", "of_raw_range", "goal", "met", "repeats"]


def _median_range(xs: list[float], digits: int) -> tuple[float, str]:
    xs = sorted(xs)
    return round(statistics.median(xs), digits), f"{xs[0]:.{digits}f}–{xs[-1]:.{digits}f}"


def summarise(env_id: str, ours: str, ref: str | None, reps: list[dict[str, float]]) -> dict:
    """One row from R paired repeats {ours, ref, raw}: medians and min–max of the rates and of the
    within-repeat ratios (paired: a ratio is taken inside one repeat, where load is shared)."""
    row: dict = {"env": env_id, "algo": ours, "reference": ref or "", "repeats": len(reps)}
    row["steps_per_s"], row["steps_per_s_range"] = _median_range([r["ours"] for r in reps], 1)
    row["of_raw"], row["of_raw_range"] = _median_range([r["ours"] / r["raw"] for r in reps], 3)
    if ref:
        row["reference_steps_per_s"] = round(statistics.median(r["ref"] for r in reps), 1)
        row["ratio"], row["ratio_range"] = _median_range([r["ours"] / r["ref"] for r in reps], 2)
    goal = GOALS.get((env_id, ours), {})
    row["goal"] = " ".join(f"{k}≥{v:g}" for k, v in goal.items())
    row["met"] = (all(isinstance(row.get(k), float) and row[k] >= v for k, v in goal.items())
                  if goal else "")
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Hopper-v5"])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=5, help="paired repeats per measurement (median, range)")
    p.add_argument("--algos", nargs="+", default=[p[0] for p in PAIRS], help="which of ours to measure")
    p.add_argument("--out", default="results/bench/throughput.csv")
    a = p.parse_args(argv)
    if a.repeats < 1 or a.steps < 1:
        p.error("--repeats and --steps must be ≥ 1")
    torch.set_num_threads(1)
    rows = []
    for env_id in a.envs:
        raws = []
        for ours, ref, overrides in (p for p in PAIRS if p[0] in a.algos):
            reps: list[dict[str, float]] = []
            try:
                for k in range(a.repeats):
                    # alternate who goes first, so a drift of the machine's load favours neither
                    order = [("ours", ours), ("ref", ref)] if k % 2 == 0 else [("ref", ref), ("ours", ours)]
                    before = raw_env_steps_per_second(env_id, a.steps)
                    rep = {}
                    for key, algo in order:
                        if algo:
                            rep[key] = learn_steps_per_second(algo, env_id, a.steps, overrides)
                    # the raw rate on both sides of the pair: the machine's speed drifts within a repeat
                    rep["raw"] = (before + raw_env_steps_per_second(env_id, a.steps)) / 2
                    reps.append(rep)
                    raws.append(rep["raw"])
            except ConfigError as e:   # an algorithm not registered, or the space not handled
                print(f"skip {ours} on {env_id}: {e}")
                continue
            rows.append(summarise(env_id, ours, ref, reps))
            print(rows[-1], flush=True)
        if raws:
            med, rng = _median_range(raws, 1)
            rows.insert(len(rows) - sum(r["env"] == env_id for r in rows),
                        {"env": env_id, "algo": "random actions (raw env)", "steps_per_s": med,
                         "steps_per_s_range": rng, "repeats": len(raws)})
    meta = f"# steps={a.steps} repeats={a.repeats} torch_threads=1 cpu_count={os.cpu_count()} " \
           f"machine={platform.machine()} cpu={machine_info()['cpu'].replace(' ', '_') or '?'} " \
           f"python={platform.python_version()} torch={torch.__version__} commit={git_commit()} " \
           f"date={time.strftime('%Y-%m-%d')}"
    write_csv_atomic(a.out, rows, COLS)
    Path(a.out).with_suffix(".meta").write_text(meta + "\n")
    show = ["env", "algo", "steps_per_s", "reference", "reference_steps_per_s", "ratio", "ratio_range",
            "of_raw", "goal", "met"]
    w = [max(len(str(r.get(c, ""))) for r in rows + [dict(zip(show, show))]) for c in show]
    for r in [dict(zip(show, show))] + rows:
        print("  ".join(str(r.get(c, "")).ljust(n) for c, n in zip(show, w)))


if __name__ == "__main__":
    main()
