"""Claim C3's experiment: does TRPO improve the *true* objective J(π) monotonically?

The TRPO paper's guarantee is about J(π) = E_π[Σ γ^t r_t] of the stochastic policy, update by
update. The main evaluation (the deterministic policy every few updates) measures neither. So the
runs of the matrix named by its ``monotonic:`` block (algorithms × envs × seeds; they are added to
the matrix's seeds) carry a second evaluation stream, ``j_eval.csv`` beside ``eval.csv``
(``--j-eval-freq B --j-eval-episodes E``):

- actions *sampled* from π_θ (the runner draws them from a torch RNG seeded per estimate and
  restores training's RNG state, so neither stream changes anything the algorithm draws: the run
  trains exactly as without them),
- every ``block`` B env steps, B = the largest update (n_steps · n_envs) among the compared
  algorithms on that env (``block_of: max``, the default; or one named algorithm's update): an
  algorithm is evaluated after the update that crosses each multiple of the block — the same
  amount of experience between two estimates for all (CartPole-v1: 1 024 = one TRPO update;
  Pendulum-v1: 4 096 = one PPO update = two TRPO updates),
- with ``episodes`` episodes per estimate, the same start states each time (the eval protocol's
  reset seeds: common random numbers for J(π_{k+1}) − J(π_k)).

One run, two streams: the runs behind C3 are the runs behind C4/C5 (until 2026-11-26 they were
separate runs under ``monotonic/``, trained identically: their logs matched column for column).

A "drop" is J(π_{k+1}) − J(π_k) < −tol, tol = C3's ``drop_fraction`` of (threshold − random), the
main matrix's rule; the per-run metric is the fraction of intervals with a drop
(``analysis_monotonic`` → ``tables/monotonic.csv``, column ``drop_frac``), compared across
algorithms by claim C3 with the verdicts' permutation test. The first estimate (after the first
update, before one block has passed) is dropped so that every interval spans one block.

Config (``monotonic:`` of a matrix config): envs, algorithms, seeds, episodes, block_of ("max" or
an algorithm).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from experiments.envs import EnvCatalog, load_catalog
from experiments.matrix import RunSpec, budget_of


@dataclasses.dataclass(frozen=True)
class MonotonicRun(RunSpec):
    """A run of the matrix (its out_dir is the run's) that also estimates J(π) every ``block``."""
    block: int = 0
    episodes: int = 32

    def args(self) -> str:
        return f"--j-eval-freq {self.block} --j-eval-episodes {self.episodes}"

    def identity(self) -> dict[str, Any]:
        """What the runner records as the run's ``j_eval`` (checked by ``matrix.stale_runs``)."""
        return {"freq": self.block, "episodes": self.episodes, "policy": "stochastic"}


def block_of(algo: str, env_id: str, catalog: EnvCatalog | None = None) -> int:
    """Env steps of one update of ``algo`` on ``env_id`` (n_steps · n_envs of its resolved settings)."""
    from experiments.runner import resolve_hyperparams

    spec = (catalog or load_catalog()).get(env_id)
    _, cfg = resolve_hyperparams(algo, spec, {})
    return int(cfg.n_steps) * int(cfg.n_envs)


def expand(config: Mapping[str, Any], catalog: EnvCatalog | None = None) -> dict[str, MonotonicRun]:
    """run dir → run, for the ``monotonic`` block of a matrix config (empty without one)."""
    mono = config.get("monotonic")
    if not mono:
        return {}
    catalog = catalog or load_catalog()
    results = config.get("results", "results")
    out: dict[str, MonotonicRun] = {}
    for env in mono["envs"]:
        spec = catalog.get(env)
        steps = int(config.get("steps", {}).get(env, budget_of(spec, config["profile"])))
        by = mono.get("block_of", "max")
        block = max(block_of(a, env, catalog) for a in (mono["algorithms"] if by == "max" else [by]))
        for algo in mono["algorithms"]:
            for seed in mono["seeds"]:
                r = MonotonicRun(algo, env, int(seed), steps, block, int(mono.get("episodes", 32)))
                out[r.out_dir(results)] = r
    return out
