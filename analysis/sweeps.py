"""Hyper-parameter sweeps (claim C4, robustness): grid expansion, run bookkeeping, tables.

The experiment config's ``sweeps:`` section::

    sweeps:
      env: CartPole-v1            # or envs: [CartPole-v1, ...]
      seeds: [0, 1, 2]            # default: the config's seeds
      steps: 50000                # default: the env's budget for the profile
      ppo:  {clip_range: [0.1, 0.2, 0.3], learning_rate: [0.0003, 0.001, 0.003]}
      trpo: {target_kl: [0.005, 0.01, 0.02, 0.05]}

Each algorithm's grid is the Cartesian product of its lists. A run lives in
``results/sweeps/{algo}/{env_slug}/{setting}/{seed}`` with ``setting`` such as
``clip_range=0.1__learning_rate=0.001``. Algorithms that are not registered (yet) are skipped
with a warning; an unknown hyper-parameter is an error before any job starts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESERVED = {"env", "envs", "seeds", "steps"}


@dataclass(frozen=True)
class SweepRun:
    algo: str
    env: str
    seed: int
    steps: int
    setting: tuple[tuple[str, Any], ...]

    @property
    def slug(self) -> str:
        return setting_slug(dict(self.setting))

    def out_dir(self, results: str = "results") -> str:
        return f"{results}/sweeps/{self.algo}/{self.env.replace('/', '_')}/{self.slug}/{self.seed}"

    def set_args(self, base: Mapping[str, Any] | None = None) -> str:
        sets = {**(base or {}), **dict(self.setting)}
        return " ".join(
            f"--set {k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sets.items()
        )


def setting_slug(setting: Mapping[str, Any]) -> str:
    return "__".join(f"{k}={v}" for k, v in sorted(setting.items()))


def parse_slug(slug: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in (slug or "").split("__"):
        if "=" in item:
            k, v = item.split("=", 1)
            try:
                out[k] = float(v) if any(ch in v for ch in ".eE") else int(v)
            except ValueError:
                out[k] = v
    return out


class SweepError(ValueError):
    pass


def expand(config: Mapping[str, Any], check: bool = True) -> tuple[dict[str, SweepRun], list[str]]:
    """out_dir → SweepRun for the config's ``sweeps:`` (empty without one), and warnings."""
    sw = config.get("sweeps")
    if not sw:
        return {}, []
    if not isinstance(sw, Mapping):
        raise SweepError("config `sweeps` must be a mapping")
    envs = sw.get("envs") or ([sw["env"]] if "env" in sw else [])
    if isinstance(envs, str):
        envs = [envs]
    if not envs:
        raise SweepError("config `sweeps` needs `env` or `envs`")
    seeds = sw.get("seeds", config.get("seeds", [0]))
    if not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise SweepError(f"sweeps.seeds must be a list of non-negative integers, got {seeds!r}")
    grids = {k: v for k, v in sw.items() if k not in RESERVED}
    if not grids:
        raise SweepError("config `sweeps` lists no algorithm grid (e.g. ppo: {clip_range: [0.1, 0.2]})")
    results = config.get("results", "results")
    warnings: list[str] = []
    if check:
        from algorithms import registry
        from experiments.envs import load_catalog
        from experiments.matrix import budget_of
        from experiments.runner import resolve_hyperparams

        catalog = load_catalog()
    runs: dict[str, SweepRun] = {}
    for algo, grid in grids.items():
        if (
            not isinstance(grid, Mapping)
            or not grid
            or not all(isinstance(v, list) and v for v in grid.values())
        ):
            raise SweepError(f"sweeps.{algo} must map hyper-parameters to non-empty lists, got {grid!r}")
        if check and algo not in registry.ALGORITHMS:
            warnings.append(f"sweeps.{algo}: algorithm not registered; its sweep is skipped")
            continue
        keys = sorted(grid)
        for env in envs:
            steps = sw.get("steps")
            if check:
                spec = catalog.get(env)
                steps = steps or budget_of(spec, config.get("profile", "default"))
            for values in itertools.product(*(grid[k] for k in keys)):
                setting = dict(zip(keys, values))
                if check:
                    resolve_hyperparams(algo, spec, {**config.get("set", {}).get(algo, {}), **setting})
                for seed in seeds:
                    r = SweepRun(algo, env, int(seed), int(steps or 0), tuple(sorted(setting.items())))
                    runs[r.out_dir(results)] = r
    return runs, warnings


def ensure_summary(out_dir: str | Path, log: str | Path, algo: str, env: str, seed: int, steps: int) -> bool:
    """Write a ``failed`` summary.json if the run left none (crash, bad config). True if written."""
    out = Path(out_dir)
    if (out / "summary.json").exists():
        return False
    tail = ""
    if Path(log).exists():
        tail = "\n".join(Path(log).read_text(errors="replace").strip().splitlines()[-5:])
    from experiments.io import write_json_atomic

    write_json_atomic(
        out / "summary.json",
        {
            "algo": algo,
            "env_id": env,
            "seed": seed,
            "total_steps": steps,
            "status": "failed",
            "error": f"the run wrote no summary; log tail: {tail}" if tail else "the run wrote no summary",
            "final_eval_return": None,
            "steps_done": 0,
            "wall_s": None,
            "steps_per_second": None,
            "command": " ".join(sys.argv),
        },
    )
    return True


def sweep_metrics(runs: Mapping[str, SweepRun], catalog: Any, cfg: Mapping[str, Any]) -> Any:
    """One row per sweep run (failed and missing included) with the run metrics and one
    column per swept hyper-parameter."""
    import pandas as pd

    from analysis.aggregate import RunRef, collect
    from analysis.stats import run_metrics

    refs = [RunRef(d, r.algo, r.env, r.seed, r.steps, r.slug) for d, r in runs.items()]
    t = collect(refs)
    m = run_metrics(t.runs, t.curves, catalog, cfg)
    params = pd.DataFrame([parse_slug(s) for s in m["setting"]], index=m.index)
    return pd.concat([m, params], axis=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.sweeps")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ensure-summary", help="write a failed summary.json if a run left none")
    e.add_argument("out_dir")
    e.add_argument("log")
    e.add_argument("--algo", required=True)
    e.add_argument("--env", required=True)
    e.add_argument("--seed", type=int, required=True)
    e.add_argument("--steps", type=int, required=True)
    a = p.parse_args(argv)
    if a.cmd == "ensure-summary":
        wrote = ensure_summary(a.out_dir, a.log, a.algo, a.env, a.seed, a.steps)
        print(json.dumps({"wrote_failed_summary": wrote}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
