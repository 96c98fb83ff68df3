"""Synthetic results trees in the runner's contract format, with known properties, for the
analysis tests and the report test (no training involved)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ENVS = {"CartPole-v1": (22.0, 475.0), "Pendulum-v1": (-1200.0, -200.0)}  # random, threshold


@dataclass
class Profile:
    """Normalised eval score s(t) = plateau·(1 − exp(−t / (tau·T))) + noise, with optional
    periodic drops; TRPO-like runs log KL ≤ δ, NPG-like runs may exceed it."""

    plateau: float = 1.0
    tau: float = 0.3
    noise: float = 0.02
    drop_every: int = 0  # every k-th evaluation falls by drop_size (0: never)
    drop_size: float = 0.4
    kl_over: float = 0.0  # > 0: KL/δ up to 1 + kl_over on some updates
    log_kl: bool = False


PROFILES = {
    "ppo": Profile(1.0, 0.15, 0.03, drop_every=5),
    "sb3-ppo": Profile(1.0, 0.18, 0.03, drop_every=5),
    "trpo": Profile(0.9, 0.35, 0.01, log_kl=True),
    "npg": Profile(0.8, 0.4, 0.03, drop_every=3, kl_over=0.5, log_kl=True),
    "sb3-a2c": Profile(0.6, 0.5, 0.05, drop_every=3),
    "acer": Profile(1.0, 0.12, 0.02),
    "acer-no-trunc": Profile(0.98, 0.13, 0.02),
    "acer-no-retrace": Profile(0.6, 0.3, 0.02),
    "acer-no-tr": Profile(0.3, 0.5, 0.02),
    "acer-no-replay": Profile(0.7, 0.3, 0.02),
}


@dataclass
class RunSpec:
    algo: str
    env: str
    seed: int
    steps: int = 20_000
    status: str = "ok"  # ok | failed | missing (no summary.json)
    profile: Profile | None = None
    setting: dict = field(default_factory=dict)


def curve(p: Profile, steps: int, seed: int, n_evals: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(steps / n_evals, steps, n_evals)
    s = p.plateau * (1 - np.exp(-t / (p.tau * steps))) + rng.normal(0, p.noise, n_evals)
    if p.drop_every:
        s[p.drop_every :: p.drop_every] -= p.drop_size
    return t, s


def write_run(root: str | Path, spec: RunSpec, sub: str = "runs") -> Path:
    """Write progress.csv, eval.csv and (unless missing) summary.json for one run."""
    rnd, thr = ENVS[spec.env]
    p = spec.profile or PROFILES.get(spec.algo, Profile())
    slug = spec.env.replace("/", "_")
    parts = (
        [root, sub, spec.algo, slug]
        + (["__".join(f"{k}={v}" for k, v in sorted(spec.setting.items()))] if spec.setting else [])
        + [str(spec.seed)]
    )
    d = Path(*map(str, parts))
    d.mkdir(parents=True, exist_ok=True)
    t, s = curve(p, spec.steps, zlib.crc32(f"{spec.algo}|{spec.env}|{spec.seed}".encode()))
    if spec.status == "failed":
        t, s = t[: len(t) // 2], s[: len(s) // 2]
    ret = rnd + s * (thr - rnd)
    pd.DataFrame(
        {"step": t.astype(int), "return_mean": ret, "return_std": np.abs(ret) * 0.05, "n_episodes": 10}
    ).to_csv(d / "eval.csv", index=False)
    n_up = 4 * len(t)
    up_steps = np.linspace(t[-1] / n_up, t[-1], n_up).astype(int)
    rng = np.random.default_rng(spec.seed)
    prog = {
        "step": up_steps,
        "wall_s": np.linspace(0.1, 10, n_up),
        "episode_return": np.interp(up_steps, t, ret),
        "episodes": 3,
    }
    if p.log_kl:
        delta = 0.01
        ratio = rng.uniform(0.3, 1.0, n_up)
        if p.kl_over:
            ratio[::4] = 1 + p.kl_over * rng.uniform(0.2, 1.0, len(ratio[::4]))
        prog.update(kl=ratio * delta, max_kl=delta, step_accepted=1)
    else:
        prog.update(approx_kl=rng.uniform(0, 0.02, n_up), clip_fraction=rng.uniform(0, 0.2, n_up))
    pd.DataFrame(prog).to_csv(d / "progress.csv", index=False)
    if spec.status != "missing":
        summary = {
            "algo": spec.algo,
            "env_id": spec.env,
            "seed": spec.seed,
            "total_steps": spec.steps,
            "hyperparams": spec.setting,
            "status": spec.status,
            "error": "non-finite pg_loss at step 9000" if spec.status == "failed" else None,
            "final_eval_return": float(ret[-1]),
            "steps_done": int(t[-1]),
            "wall_s": 10.0,
            "steps_per_second": 2000.0,
            "family": "classic",
            "versions": {},
            "git_commit": "synthetic",
            "command": "synthetic",
        }
        (d / "summary.json").write_text(json.dumps(summary))
    return d


def write_tree(
    root: str | Path,
    algos: Sequence[str] = tuple(PROFILES),
    envs: Sequence[str] = tuple(ENVS),
    seeds: Sequence[int] = (0, 1, 2, 3),
    steps: int = 20_000,
    status: Callable[[str, str, int], str] | None = None,
) -> list[RunSpec]:
    """A full matrix; ``status(algo, env, seed)`` may mark runs failed or missing."""
    specs = []
    for a in algos:
        for e in envs:
            for s in seeds:
                spec = RunSpec(a, e, s, steps, status(a, e, s) if status else "ok")
                write_run(root, spec)
                specs.append(spec)
    return specs


def write_toys(root: str | Path, ngd_faster: bool = True, npg_faster: bool = True, nac_rate: float = 0.5,
               ng_cosine: float = 0.97) -> Path:
    """Toy outputs in the toys rules' format (results/toys/*.csv)."""
    d = Path(root) / "toys"
    d.mkdir(parents=True, exist_ok=True)
    rows, summ = [], []
    for start, (mu0, s0) in {"small_sigma": (2.0, 0.2), "large_sigma": (2.0, 10.0)}.items():
        for method, n in (("gd", 400 if ngd_faster else 40), ("ngd", 40 if ngd_faster else 400)):
            k = np.arange(n + 1)
            frac = np.exp(-5 * k / n)
            mu, sigma = mu0 * frac, 1 + (s0 - 1) * frac
            loss = np.log(sigma) + (1 + mu**2) / (2 * sigma**2) + 0.5 * np.log(2 * np.pi)
            rows += [
                {"method": method, "start": start, "iter": int(i), "mu": m, "sigma": s, "loss": lo}
                for i, m, s, lo in zip(k, mu, sigma, loss)
            ]
            summ.append(
                {
                    "method": method,
                    "start": start,
                    "iterations_to_tol": n,
                    "converged": True,
                    "final_loss": float(loss[-1]),
                    "tol": 1e-8,
                    "lr": 0.1,
                }
            )
    pd.DataFrame(rows).to_csv(d / "gaussian_trajectories.csv", index=False)
    pd.DataFrame(summ).to_csv(d / "gaussian_summary.csv", index=False)
    crow, csum = [], []
    for method, n in (("pg", 2000 if npg_faster else 50), ("npg", 50 if npg_faster else 2000)):
        it = np.arange(3000)
        J = 10 * (1 - np.exp(-3 * it / n))
        crow += [{"method": method, "iter": int(i), "J": float(j)} for i, j in zip(it, J)]
        csum.append(
            {
                "method": method,
                "iterations_to_target": n,
                "target": 9.0,
                "final_J": float(J[-1]),
                "J_opt": 10.0,
            }
        )
    pd.DataFrame(crow).to_csv(d / "npg_vs_pg.csv", index=False)
    pd.DataFrame(csum).to_csv(d / "npg_vs_pg_summary.csv", index=False)
    # compatible features (C7): exact fits at rounding error, sampled errors ∝ N^(−nac_rate) × noise
    rng = np.random.default_rng(0)
    comp = [{"problem": "p", "theta": t, "kind": "exact", "n_samples": 0, "seed": -1, "f_rel_err": 1e-15,
             "rel_err": 1e-15, "cosine": 1.0} for t in ("a", "b")]
    comp += [{"problem": "p", "theta": t, "kind": "sampled", "n_samples": n, "seed": s,
              "f_rel_err": float(3 * n ** -nac_rate * np.exp(0.2 * rng.standard_normal())), "rel_err": np.nan,
              "cosine": np.nan} for t in ("a", "b") for n in (100, 1000, 10000) for s in range(10)]
    pd.DataFrame(comp).to_csv(d / "compatible.csv", index=False)
    # CG / K-FAC vs the exact natural gradient (C8): cosines near 1, costs a small fraction
    ng = [{"width": w, "n_params": 100 * w, "seed": s, "damping": lam, "method": m, "cosine": cos,
           "rel_err": 1 - cos, "flops": fl * 1e9, "flops_exact": 1e9, "seconds": 0.0}
          for w in (16, 32) for s in range(3) for lam in (1e-3, 0.1)
          for m, cos, fl in (("gradient", 0.3, 0.0), ("cg", ng_cosine, 0.01), ("kfac", ng_cosine, 0.001),
                             ("exact", 1.0, 1.0))]
    pd.DataFrame(ng).to_csv(d / "ng_approx.csv", index=False)
    return d
