"""Gradient descent vs natural gradient descent on the Gaussian manifold (seed §4.5.1).

Fit N(μ, σ) to a target N(μ*, σ*) by minimising the exact expected negative log-likelihood

    L(μ, σ) = E_{x∼N(μ*, σ*)}[−log N(x; μ, σ)] = log σ + (σ*² + (μ − μ*)²) / (2σ²) + ½ log 2π,

whose minimum L* = log σ* + ½ + ½ log 2π is reached at (μ*, σ*). Its gradient is

    ∂L/∂μ = (μ − μ*) / σ²,        ∂L/∂σ = 1/σ − (σ*² + (μ − μ*)²) / σ³.

* GD:  (μ, σ) ← (μ, σ) − η ∇L
* NGD: (μ, σ) ← (μ, σ) − η F⁻¹ ∇L with the exact Fisher of N(μ, σ) in (μ, σ),
  F = diag(1/σ², 2/σ²).

Starts: the seed's two scales, σ₀ = 0.2 ("small_sigma") and σ₀ = 10 ("large_sigma"), both at
μ₀ = 2 for a target N(0, 1). In parameter space both starts look alike; on the manifold the
first is sharply curved (GD must take tiny steps there) and the second is flat (GD crawls).

Fairness: each method gets its best learning rate η from the same log grid (the one that
reaches the tolerance in the fewest iterations without σ ≤ 0 or overflow); a run stops once
the excess loss L − L* ≤ ``tol``. Deterministic: no sampling, no RNG.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from experiments.io import write_csv_atomic

MU_STAR, SIGMA_STAR = 0.0, 1.0
STARTS = {"small_sigma": (2.0, 0.2), "large_sigma": (2.0, 10.0)}
METHODS = ("gd", "ngd")
LR_GRID = tuple(10.0 ** (k / 2) for k in range(-12, 2))      # 1e-6 … 3.16, half-decades
TOL = 1e-8
MAX_ITER = 20_000
LOSS_OPT = math.log(SIGMA_STAR) + 0.5 + 0.5 * math.log(2 * math.pi)


def loss(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Exact expected NLL of N(μ*, σ*) samples under N(μ, σ)."""
    m2 = SIGMA_STAR**2 + (mu - MU_STAR) ** 2
    return np.log(sigma) + m2 / (2 * sigma**2) + 0.5 * math.log(2 * math.pi)


def grad(mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m2 = SIGMA_STAR**2 + (mu - MU_STAR) ** 2
    return (mu - MU_STAR) / sigma**2, 1 / sigma - m2 / sigma**3


def fisher_diag(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Fisher matrix of N(μ, σ) in (μ, σ): diag(1/σ², 2/σ²)."""
    return 1 / sigma**2, 2 / sigma**2


def update(method: str, mu: np.ndarray, sigma: np.ndarray, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g_mu, g_sigma = grad(mu, sigma)
    if method == "ngd":
        f_mu, f_sigma = fisher_diag(sigma)
        g_mu, g_sigma = g_mu / f_mu, g_sigma / f_sigma
    return mu - lr * g_mu, sigma - lr * g_sigma


def descend(method: str, mu0: float, sigma0: float, lrs: np.ndarray, tol: float = TOL,
            max_iter: int = MAX_ITER, record: bool = False, until_first: bool = False) -> dict:
    """Run ``method`` from (μ₀, σ₀) once per learning rate, all in lock-step.

    Returns per learning rate: ``iterations`` to excess loss ≤ tol (−1 if never),
    ``diverged`` (σ ≤ 0 or non-finite), the final (μ, σ, loss); with ``record`` also the
    trajectory (one row per iteration, iteration 0 the start) of each learning rate.
    ``until_first`` stops as soon as one learning rate reaches the tolerance.
    """
    lrs = np.asarray(lrs, float)
    mu, sigma = np.full(lrs.shape, mu0), np.full(lrs.shape, sigma0)
    iterations = np.where(loss(mu, sigma) - LOSS_OPT <= tol, 0, -1)
    diverged = np.zeros(lrs.shape, bool)
    rows = [[(0, mu0, sigma0, float(loss(mu[i], sigma[i])))] for i in range(len(lrs))] if record else None
    for it in range(1, max_iter + 1):
        active = (iterations < 0) & ~diverged
        if not active.any() or (until_first and (iterations >= 0).any()):
            break
        with np.errstate(all="ignore"):
            new_mu, new_sigma = update(method, mu, sigma, lrs)
            bad = active & ~(np.isfinite(new_mu) & np.isfinite(new_sigma) & (new_sigma > 0))
            diverged |= bad
            active &= ~bad
            mu, sigma = np.where(active, new_mu, mu), np.where(active, new_sigma, sigma)
            excess = loss(mu, sigma) - LOSS_OPT
        iterations = np.where(active & (excess <= tol), it, iterations)
        if record:
            for i in np.flatnonzero(active):
                rows[i].append((it, float(mu[i]), float(sigma[i]), float(excess[i] + LOSS_OPT)))
    return {"iterations": iterations, "diverged": diverged, "mu": mu, "sigma": sigma,
            "loss": loss(mu, sigma), "rows": rows}


def best_lr(method: str, mu0: float, sigma0: float, lrs=LR_GRID, tol: float = TOL,
            max_iter: int = MAX_ITER) -> float:
    """The grid learning rate reaching ``tol`` in the fewest iterations (ties: the smallest);
    if none does, the non-diverging one that got closest."""
    r = descend(method, mu0, sigma0, np.array(lrs), tol, max_iter, until_first=True)
    ok = r["iterations"] >= 0
    if ok.any():
        return float(np.array(lrs)[ok][np.argmin(r["iterations"][ok])])
    alive = ~r["diverged"]
    return float(np.array(lrs)[alive][np.argmin(r["loss"][alive])]) if alive.any() else float(lrs[0])


def experiment(tol: float = TOL, max_iter: int = MAX_ITER) -> tuple[list[dict], list[dict]]:
    """(trajectory rows, summary rows) for every method × start, at each one's best η."""
    traj, summary = [], []
    for method in METHODS:
        for start, (mu0, sigma0) in STARTS.items():
            lr = best_lr(method, mu0, sigma0, tol=tol, max_iter=max_iter)
            r = descend(method, mu0, sigma0, np.array([lr]), tol, max_iter, record=True)
            traj += [{"method": method, "start": start, "iter": it, "mu": m, "sigma": s, "loss": l}
                     for it, m, s, l in r["rows"][0]]
            n = int(r["iterations"][0])
            summary.append({"method": method, "start": start, "iterations_to_tol": n if n >= 0 else "",
                            "converged": n >= 0, "final_loss": float(r["loss"][0]), "tol": tol, "lr": lr})
    return traj, summary


TRAJECTORY_COLUMNS = ["method", "start", "iter", "mu", "sigma", "loss"]
SUMMARY_COLUMNS = ["method", "start", "iterations_to_tol", "converged", "final_loss", "tol", "lr"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.toys.gaussian_manifold", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tol", type=float, default=TOL)
    p.add_argument("--max-iter", type=int, default=MAX_ITER)
    a = p.parse_args(argv)
    traj, summary = experiment(a.tol, a.max_iter)
    write_csv_atomic(a.out / "gaussian_trajectories.csv", traj, TRAJECTORY_COLUMNS)
    write_csv_atomic(a.out / "gaussian_summary.csv", summary, SUMMARY_COLUMNS)
    for s in summary:
        print(f"{s['method']:>3} {s['start']:<11} lr={s['lr']:.3g} "
              f"iterations={s['iterations_to_tol'] if s['converged'] else '-'} "
              f"converged={s['converged']} final_loss={s['final_loss']:.8f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
