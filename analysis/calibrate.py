"""Calibration and power of every claim's statistical test at the design of a matrix config.

    python -m analysis.calibrate [--config experiments/config/default.yaml] [--out results/tables/calibration.csv]
                                 [--n-sim 1000] [--compare]

For each comparison part of claims C3–C6 (the parts ``analysis/claims.py`` judges with
``stats.compare``), the *design* is what the config's matrix gives it: the envs where both
algorithms run with ≥ ``min_runs`` seeds, and the number of runs of each per env. On that design:

* false-verdict rate  share of ``n_sim`` simulated A/A designs (both algorithms' per-run scores drawn
                      from the same per-env distribution, the effect sitting exactly on the threshold)
                      that end "supported" (p_greater ≤ α/2) or "not supported" (p_less ≤ α/2, before
                      Holm, which only lowers it); nominal α = 1 − confidence; Monte-Carlo SE √(f(1−f)/n_sim)
* MDE                 the smallest shift δ of x's per-run scores beyond the support threshold that gives
                      the verdict "supported" in ≥ ``power`` (80 %) of simulated designs, found by
                      bisection with common random numbers (∞ when no shift can: the design's most
                      extreme split is not significant). Reported in the claim's metric: the mean
                      difference itself for "diff" parts, the shift in per-run metric units for P(X > Y)

Simulated scores: each env's per-run values of the claim's metric in the committed snapshot
(``calibration.scores`` in claims.yaml: results/snapshot/default/tables/run_metrics.csv), pooled
over every algorithm of that env and resampled with replacement (the empirical distribution:
ties and bounded metrics such as drop_frac ∈ [0, 1] kept as they are). Pooling over algorithms
makes the spread wider than one algorithm's, so the MDEs are on the cautious side.

The parts judged by a one-sample percentile bootstrap against thresholds (C4's robustness R on the
sweep, C7's convergence rate r on the toy) have no two methods to make identical; their analogue —
how often a verdict comes out when the true value sits on a threshold — is estimated by the double
bootstrap of their own data (analysis/double_bootstrap.py), and a design that fails it is inconclusive
by the same rule. The deterministic parts (C1, C2, C7's exact identity, C8, C3's KL check) are listed
with why they have no rate.

Seeded (``calibration.seed``) and vectorised over simulations: deterministic and ~seconds (the double
bootstrap: ~half a minute).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from analysis.config import load_config

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    "claim", "part", "design", "metric", "stat", "n_sim", "false_verdict_rate", "false_verdict_se",
    "false_supported_rate", "false_not_supported_rate", "nominal", "calibrated", "mde", "mde_unit", "method",
]  # fmt: skip
METHOD = "stratified permutation test"


@dataclass(frozen=True)
class PartSpec:
    """One comparison part of a claim: x against y on ``metric`` with ``stat`` ("diff" | "poi")."""

    claim: str
    part: str
    x: str
    y: str
    metric: str
    stat: str
    support_above: float
    refute_below: float
    data: str = "main"          # "monotonic": claim C3's true-objective runs (experiments/monotonic.py)


def comparison_parts(cfg: Mapping[str, Any]) -> list[PartSpec]:
    """Every entry of ``claims.yaml: comparisons`` (the parts ``analysis/claims.py`` judges, same names)."""
    from analysis.comparisons import comparisons

    return [PartSpec(c.claim, c.part, c.x, c.y, c.metric, c.stat, c.support_above, c.refute_below, c.data)
            for c in comparisons(cfg)]


# parts without a sampling test (deterministic toys, a check that holds by rule)
UNCALIBRATED_PARTS = {
    ("C1", "all starts"): "deterministic toy: no sampling error",
    ("C2", "every problem"): "deterministic toy: no sampling error",
    ("C3", "KL ≤ δ"): "a check on every logged update: no sampling test",
    ("C7", "exact"): "exact identity on deterministic toys: no sampling error",
    ("C8", "every method and λ"): "deterministic given the seeds: judged on the worst case, no sampling test",
}


def design_of(runs: Sequence[tuple[str, str, int]], x: str, y: str, min_runs: int) -> dict[str, tuple[int, int]]:
    """{env: (runs of x, runs of y)} over the envs where both have ≥ ``min_runs`` runs."""
    count: dict[tuple[str, str], int] = {}
    for a, e, _ in runs:
        count[(a, e)] = count.get((a, e), 0) + 1
    envs = sorted({e for a, e, _ in runs})
    return {
        e: (count.get((x, e), 0), count.get((y, e), 0))
        for e in envs
        if min(count.get((x, e), 0), count.get((y, e), 0)) >= min_runs
    }


def matrix_runs(config: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(algo, env, seed) of every run of a matrix config."""
    from experiments.matrix import expand

    keys = ("profile", "seeds", "more_seeds", "monotonic", "algorithms", "suites", "envs", "steps", "set",
            "asymmetric_ok", "exclude")   # every key that decides which runs exist (seeds_of: more_seeds, monotonic)
    return [(r.algo, r.env, int(r.seed)) for r in expand({k: config[k] for k in keys if k in config}, check_deps=False)]


def score_pools(metrics: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    """Per env, the finite per-run values of ``metric`` of every used main-matrix run."""
    m = metrics
    if "setting" in m:
        m = m[m["setting"].isna() | (m["setting"].astype(str) == "")]
    if "used" in m:
        m = m[m["used"].astype(str).str.lower() == "true"]
    out = {}
    for e, g in m.groupby("env"):
        v = pd.to_numeric(g[metric], errors="coerce").to_numpy(float)
        if np.isfinite(v).any():
            out[str(e)] = v[np.isfinite(v)]
    return out


class Simulator:
    """A/A (and shifted A/B) designs drawn once per design; p-values vectorised over simulations."""

    def __init__(self, design: Mapping[str, tuple[int, int]], pools: Mapping[str, np.ndarray], stat: str,
                 n_sim: int, n_perm: int, seed: int, chunk: int = 4_000_000) -> None:  # fmt: skip
        rng = np.random.default_rng(seed)
        fallback = np.concatenate(list(pools.values())) if pools else np.zeros(1)
        self.stat = stat
        self.x = [rng.choice(pools.get(e, fallback), size=(n_sim, nx)) for e, (nx, _) in design.items()]
        self.y = [rng.choice(pools.get(e, fallback), size=(n_sim, ny)) for e, (_, ny) in design.items()]
        self.orders = stats.permutation_orders(list(design.values()), n_perm, seed + 1)
        self.step = max(1, chunk // ((n_perm + 1) * max(sum(nx + ny for nx, ny in design.values()), 1)))
        self.n_sim = n_sim

    def pvalues(self, delta: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(p_greater, p_less) per simulated design, x's scores shifted by ``delta`` beyond the threshold."""
        g, le = [], []
        for i in range(0, self.n_sim, self.step):
            xs = [a[i : i + self.step] + delta for a in self.x]
            ys = [b[i : i + self.step] for b in self.y]
            pg, pl = stats.permutation_pvalues(stats.permutation_stats(xs, ys, self.stat, 0.0, self.orders))
            g.append(pg)
            le.append(pl)
        return np.concatenate(g), np.concatenate(le)

    def percentile_bootstrap(self, n_boot: int, confidence: float, seed: int) -> tuple[float, float]:
        """(false "supported", false "not supported") rate of the percentile bootstrap (the former rule)."""
        rng = np.random.default_rng(seed)
        fn = stats.stat_poi() if self.stat == "poi" else stats.stat_diff()
        null = 0.5 if self.stat == "poi" else 0.0
        sup = ref = 0
        for i in range(self.n_sim):
            r = {k: [a[i][rng.integers(0, a.shape[1], size=(n_boot, a.shape[1]))] for a in v]
                 for k, v in (("x", self.x), ("y", self.y))}  # fmt: skip
            lo, hi = np.percentile(fn(r), [50 * (1 - confidence), 100 - 50 * (1 - confidence)])
            sup, ref = sup + (lo > null), ref + (hi < null)
        return sup / self.n_sim, ref / self.n_sim


def mde(sim: Simulator, alpha: float, power: float, span: float, iters: int = 12) -> float:
    """Smallest shift δ ≥ 0 with P(p_greater ≤ α) ≥ power (bisection; ∞ if 4·span is not enough)."""

    def ok(d: float) -> bool:
        return float((sim.pvalues(d)[0] <= alpha).mean()) >= power

    hi = 4.0 * span
    if not ok(hi):
        return math.inf
    lo = 0.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def calibrate(config: Mapping[str, Any], cfg: Mapping[str, Any], metrics: pd.DataFrame,
              n_sim: int | None = None, with_mde: bool = True, monotonic: pd.DataFrame | None = None,
              sweeps: pd.DataFrame | None = None, compatible: pd.DataFrame | None = None,
              workers: int = 1) -> pd.DataFrame:  # fmt: skip
    """One row per claim part: the design, its A/A false-verdict rate and its MDE. C3's comparison parts
    take the design of the config's ``monotonic`` runs (experiments/monotonic.py) when it has them, with
    scores from their per-run metrics (``monotonic``; the main runs' when not given). The one-sample
    parts (C4's robustness from ``sweeps``, C7's sampled rate from ``compatible``) are calibrated by the
    double bootstrap (analysis/double_bootstrap.py). ``workers`` processes share the simulations; the
    table is the same for any number of them."""
    cal = cfg.get("calibration", {}) or {}
    n_sim = int(n_sim or cal.get("n_sim", 1000))
    seed, power = int(cal.get("seed", 0)), float(cal.get("power", 0.8))
    pc = stats.PermutationCfg.from_cfg(cfg)
    n_perm = int(cal.get("n_perm", pc.n_perm))
    alpha, nominal = (1 - pc.confidence) / 2, 1 - pc.confidence
    min_runs = int(cfg.get("min_runs", 3))
    runs = matrix_runs(config)
    mono = config.get("monotonic")
    mono_runs = ([(a, e, int(s)) for e in mono["envs"] for a in mono["algorithms"] for s in mono["seeds"]]
                 if mono else [])
    one_sided = 1 - stats.BootstrapCfg.from_cfg(cfg).confidence     # their intervals' level, not the permutation's
    # the work: one simulation per distinct (design, metric, stat) and the one-sample double bootstrap;
    # each has its own seeded generator, so running them in parallel changes no number
    todo: dict[tuple, tuple] = {}
    plan: list[tuple[Any, dict[str, Any], tuple | None, dict]] = []
    for p in comparison_parts(cfg):
        c3_true = p.data == "monotonic" and bool(mono_runs)
        scores = monotonic if c3_true and monotonic is not None else metrics
        design = design_of(mono_runs if c3_true else runs, p.x, p.y, min_runs)
        unit = "mean difference" if p.stat == "diff" else f"shift of {p.x}'s per-run {p.metric}"
        row = {"claim": p.claim, "part": p.part, "metric": p.metric, "stat": p.stat, "nominal": nominal,
               "method": METHOD, "mde_unit": unit}  # fmt: skip
        key = (tuple(sorted(design.items())), p.metric, p.stat, c3_true) if design else None
        if key is not None and key not in todo:
            todo[key] = (design, score_pools(scores, p.metric), p.stat, n_sim, n_perm, seed, alpha, power, with_mde)
        plan.append((p, row, key, design if design else design_of(mono_runs if c3_true else runs, p.x, p.y, 0)))
    done, one_sample = _in_parallel(todo, (cfg, sweeps, compatible, n_sim, seed, power, one_sided), workers)
    rows: list[dict[str, Any]] = []
    for p, row, key, design in plan:
        if key is None:
            best = max((min(n) for n in design.values()), default=0)
            rows.append({**row, "design": f"no env with ≥ {min_runs} runs of both (at most {best}): never judged",
                         "n_sim": 0, "false_verdict_rate": 0.0, "false_verdict_se": 0.0,
                         "false_supported_rate": 0.0, "false_not_supported_rate": 0.0,
                         "calibrated": True, "mde": math.inf})  # fmt: skip
            continue
        c = dict(done[key])
        delta = c.pop("delta")
        shift = p.support_above if p.stat == "diff" else 0.0
        design_txt = "; ".join(f"{e}: {nx} v {ny}" for e, (nx, ny) in design.items())
        rows.append({**row, **c, "design": f"{len(design)} envs ({design_txt} runs)",
                     "calibrated": c["false_verdict_rate"] <= nominal + 2 * c["false_verdict_se"],
                     "mde": shift + delta})  # fmt: skip
    rows += one_sample
    for (claim, part), why in UNCALIBRATED_PARTS.items():
        rows.append({"claim": claim, "part": part, "design": why, "n_sim": 0, "nominal": nominal,
                     "calibrated": True, "method": "", "mde_unit": ""})  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=COLUMNS).sort_values(["claim"], kind="stable").reset_index(drop=True)


def _simulate(design, pools, stat, n_sim, n_perm, seed, alpha, power, with_mde) -> dict[str, Any]:
    """A/A false-verdict rates (and the MDE) of one design: the cached unit of ``calibrate``."""
    sim = Simulator(design, pools, stat, n_sim, n_perm, seed)
    pg, pl = sim.pvalues(0.0)
    f_sup, f_ref = float((pg <= alpha).mean()), float((pl <= alpha).mean())
    f = float(((pg <= alpha) | (pl <= alpha)).mean())
    span = max((np.ptp(pools[e]) for e in design if e in pools and len(pools[e])), default=1.0) or 1.0
    return {"n_sim": n_sim, "false_verdict_rate": f, "false_verdict_se": math.sqrt(f * (1 - f) / n_sim),
            "false_supported_rate": f_sup, "false_not_supported_rate": f_ref,
            "delta": mde(sim, alpha, power, span) if with_mde else math.nan}  # fmt: skip


def _in_parallel(todo: dict[tuple, tuple], one_sample_args: tuple, workers: int
                 ) -> tuple[dict[tuple, dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """Every simulation in ``todo`` and the one-sample rows, on ``workers`` processes (1: in this one)."""
    if workers <= 1:
        return {k: _simulate(*a) for k, a in todo.items()}, one_sample_rows(*one_sample_args)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
        first = ex.submit(one_sample_rows, *one_sample_args)     # the longest unit (C4's double bootstrap)
        futures = {k: ex.submit(_simulate, *a) for k, a in todo.items()}
        return {k: f.result() for k, f in futures.items()}, first.result()


def one_sample_rows(cfg: Mapping[str, Any], sweeps: pd.DataFrame | None, compatible: pd.DataFrame | None,
                    n_sim: int, seed: int, power: float, nominal: float) -> list[dict[str, Any]]:
    """Calibration rows of C4's robustness (R on the sweep, analysis/claims.py) and C7's sampled
    convergence rate (analysis/claims_toys.py): the double bootstrap of the part's own estimator."""
    from analysis import claims, claims_toys
    from analysis import double_bootstrap as db

    c4, c7 = cfg.get("C4", {}) or {}, cfg.get("C7", {}) or {}
    rows: list[dict[str, Any]] = []
    base = {"nominal": nominal, "method": db.METHOD}
    first = next((c for c in comparison_parts(cfg) if c.claim == "C4"), None)
    algo, col = (first.x if first else "ppo"), c4.get("robust_metric", "norm_final")
    row = {**base, "claim": "C4", "part": "robustness", "metric": f"R of {algo} ({col})", "stat": "R",
           "mde_unit": "R"}  # fmt: skip
    strata, chosen, why = ([], None, "no sweep runs") if sweeps is None or sweeps.empty else \
        claims.robustness_strata(sweeps, algo, col, cfg, int(c4.get("robust_min_runs", 2)))  # fmt: skip
    if strata:
        k = len(strata)   # a draw resamples the held-out runs and the selection runs, and re-picks the best

        def r_of(s: list[np.ndarray]) -> stats.Estimate:
            return claims.robustness_estimate(s[:k], claims.best_of(s[k:] if chosen is not None else None), cfg)

        d_lo, d_hi = db.interval_offsets(strata + (chosen or []), r_of, n_sim, seed)
        rows.append({**row, "design": f"{k} grid points × {'/'.join(str(len(a)) for a in strata)} held-out runs"
                     + (f", best picked on {'/'.join(str(len(a)) for a in chosen)} selection runs" if chosen else ""),
                     **db.boundary_rates(d_lo, d_hi, c4.get("robust_support_above", 0.7),
                                         c4.get("robust_refute_below", 0.5), nominal, power)})
    else:
        rows.append({**row, "design": f"not calibrated: {why}", "n_sim": 0, "calibrated": True})
    row = {**base, "claim": "C7", "part": "sampled", "metric": "r in error ∝ N^(−r)", "stat": "rate",
           "mde_unit": "r"}  # fmt: skip
    sm = None if compatible is None or compatible.empty else compatible[compatible["kind"] == "sampled"]
    if sm is not None and not sm.empty:
        x, ns = claims_toys.error_cube(sm)
        b = stats.BootstrapCfg.from_cfg(cfg)

        def est(s: list[np.ndarray]) -> stats.Estimate:
            return claims_toys.rate_estimate(x, ns, s[0].astype(int), b.n_boot, b.seed, b.confidence)

        d_lo, d_hi = db.interval_offsets([np.arange(len(x), dtype=float)], est, n_sim, seed)
        rows.append({**row, "design": f"{len(x)} seeds × {x.shape[2]} policies × N = "
                     + ", ".join(f"{n:g}" for n in ns), **db.boundary_rates(
                         d_lo, d_hi, c7.get("rate_support_above", 0.25), c7.get("rate_refute_below", 0.1),
                         nominal, power)})  # fmt: skip
    else:
        rows.append({**row, "design": "not calibrated: no sampled toy rows", "n_sim": 0, "calibrated": True})
    return rows


def run(config_path: str | Path, out: str | Path, cfg: Mapping[str, Any] | None = None,
        n_sim: int | None = None, workers: int = 1) -> pd.DataFrame:  # fmt: skip
    """Calibrate the design of the matrix config at ``config_path`` and write ``out``."""
    import yaml

    from analysis.pipeline import _metrics, _read  # the readers the claims step uses: the same data

    config = yaml.safe_load(Path(config_path).read_text())
    cfg = cfg if cfg is not None else load_config(config.get("claims"))
    scores = Path((cfg.get("calibration", {}) or {}).get("scores", "results/snapshot/default/tables/run_metrics.csv"))
    scores = scores if scores.is_absolute() else ROOT / scores
    if not scores.exists():  # a tree without the snapshot: this matrix's own per-run metrics
        scores = Path(out).with_name("run_metrics.csv")
    here = Path(out).parent
    sweeps = here / "sweeps.csv"
    table = calibrate(config, cfg, pd.read_csv(scores), n_sim, monotonic=_read(here / "monotonic.csv"),
                      sweeps=_metrics(str(sweeps)) if sweeps.exists() else None,
                      compatible=_read(here.parent / "toys" / "compatible.csv"), workers=workers)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--config", default=str(ROOT / "experiments/config/default.yaml"))
    ap.add_argument("--out", default="results/tables/calibration.csv")
    ap.add_argument("--n-sim", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1, help="processes for the simulations (same table for any)")
    ap.add_argument("--compare", action="store_true",
                    help="also print the percentile bootstrap's false-verdict rates on the same designs")
    a = ap.parse_args(argv)
    t = run(a.config, a.out, n_sim=a.n_sim, workers=a.workers)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(t[["claim", "part", "design", "false_verdict_rate", "false_verdict_se", "mde", "calibrated"]])
    if a.compare:
        import yaml

        config = yaml.safe_load(Path(a.config).read_text())
        cfg = load_config(config.get("claims"))
        b = stats.BootstrapCfg.from_cfg(cfg)
        metrics = pd.read_csv(ROOT / (cfg.get("calibration", {}) or {}).get(
            "scores", "results/snapshot/default/tables/run_metrics.csv"))  # fmt: skip
        runs = matrix_runs(config)
        for p in comparison_parts(cfg):
            d = design_of(runs, p.x, p.y, int(cfg.get("min_runs", 3)))
            if d:
                n = int(a.n_sim or (cfg.get("calibration", {}) or {}).get("n_sim", 1000))
                sim = Simulator(d, score_pools(metrics, p.metric), p.stat, n, 1, 0)
                s, r = sim.percentile_bootstrap(b.n_boot, b.confidence, b.seed)
                print(f"percentile bootstrap {p.claim} {p.part}: false supported {s:.3f}, false not supported {r:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
