"""Statistics after Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice".

* normalised score    (x − random) / (threshold − random), per env (envs.yaml)
* IQM                 interquartile mean: the mean of the middle 50 % (scipy's trim_mean, 25 % cut)
* stratified bootstrap  runs resampled with replacement within each env (stratum) and each
                      algorithm independently; percentile confidence intervals
* probability of improvement  P(X > Y) = mean over envs of P(x_i > y_j) over all run pairs,
                      ties counting one half
* AUC                 the mean normalised eval return over [0, budget] of the piecewise-linear
                      learning curve (random score at step 0, last value held to the budget)
* steps to threshold  the first evaluation step whose return reaches the env's threshold

Everything vectorised over bootstrap replicates: a statistic takes, per group, a list of
(replicates × runs) arrays (one per stratum) and returns one value per replicate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.integrate import trapezoid

from analysis.aggregate import count_status, is_main

Strata = Sequence[np.ndarray]  # one 1-D array of per-run scores per env
Resampled = Mapping[str, Sequence[np.ndarray]]  # group → per-env (reps × runs) arrays


# ---------------------------------------------------------------------------------------------
# per-run quantities
def normalise(x: Any, random_score: float, threshold: float) -> Any:
    return (np.asarray(x, dtype=float) - random_score) / (threshold - random_score)


def iqm(x: Any, axis: int | None = None) -> Any:
    """Interquartile mean (25 % trimmed from each end, as rliable)."""
    return sps.trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def auc(steps: Sequence[float], values: Sequence[float], t_max: float, v0: float | None = None) -> float:
    """Mean value of the piecewise-linear curve through (steps, values) over [0, t_max].

    Before the first point the curve starts at ``v0`` at step 0 (the first value if None);
    after the last point the last value is held to ``t_max``; points past ``t_max`` are cut
    (the curve is interpolated at ``t_max``).
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(s) == 0 or not t_max or t_max <= 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    if s[0] > 0:
        s = np.r_[0.0, s]
        v = np.r_[v[0] if v0 is None else v0, v]
    if s[-1] > t_max:
        v_end = float(np.interp(t_max, s, v))
        keep = s < t_max
        s, v = np.r_[s[keep], t_max], np.r_[v[keep], v_end]
    elif s[-1] < t_max:
        s, v = np.r_[s, t_max], np.r_[v, v[-1]]
    return float(trapezoid(v, s) / t_max)


def steps_to_threshold(steps: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """First step whose value reaches ``threshold``; NaN if never."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(s, kind="stable")
    hit = np.nonzero(v[order] >= threshold)[0]
    return float(s[order][hit[0]]) if len(hit) else float("nan")


def significant_drops(values: Sequence[float], drop: float) -> tuple[int, int]:
    """(number of consecutive changes below −``drop``, number of changes)."""
    d = np.diff(np.asarray(values, dtype=float))
    d = d[np.isfinite(d)]
    return int((d < -drop).sum()), int(len(d))


# ---------------------------------------------------------------------------------------------
# stratified bootstrap
@dataclass(frozen=True)
class Estimate:
    point: float
    lo: float
    hi: float
    n: dict[str, int]
    # one-sided p-values of the stratified permutation test (``permutation_estimate``), NaN otherwise:
    # p_greater against H0 "effect ≤ support threshold", p_less against H0 "effect ≥ refute threshold"
    p_greater: float = float("nan")
    p_less: float = float("nan")

    def text(self, fmt: str = ".3g") -> str:
        return f"{self.point:{fmt}} [{self.lo:{fmt}}, {self.hi:{fmt}}]"


def stratified_bootstrap(
    groups: Mapping[str, Strata],
    statistic: Callable[[Resampled], np.ndarray],
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Point estimate and percentile CI of ``statistic``; runs are resampled within each stratum
    of each group independently. Every group must list its strata in the same order."""
    groups = {k: [np.asarray(a, dtype=float) for a in v] for k, v in groups.items()}
    for k, v in groups.items():
        if not v or any(len(a) == 0 for a in v):
            raise ValueError(f"group {k!r} has an empty stratum")
    point = float(statistic({k: [a[None, :] for a in v] for k, v in groups.items()})[0])
    rng = np.random.default_rng(seed)
    boot = statistic(
        {k: [a[rng.integers(0, len(a), size=(n_boot, len(a)))] for a in v] for k, v in groups.items()}
    )
    alpha = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(boot, [alpha, 100 - alpha])
    return Estimate(point, float(lo), float(hi), {k: int(sum(len(a) for a in v)) for k, v in groups.items()})


def _pooled(strata: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(strata), axis=1)


def stat_mean(group: str = "x") -> Callable[[Resampled], np.ndarray]:
    return lambda r: _pooled(r[group]).mean(axis=1)


def stat_iqm(group: str = "x") -> Callable[[Resampled], np.ndarray]:
    return lambda r: iqm(_pooled(r[group]), axis=1)


def stat_mean_of_strata(group: str = "x") -> Callable[[Resampled], np.ndarray]:
    """Mean over strata of each stratum's mean (every env weighs the same)."""
    return lambda r: np.mean([a.mean(axis=1) for a in r[group]], axis=0)


def stat_diff(x: str = "x", y: str = "y") -> Callable[[Resampled], np.ndarray]:
    """Mean over strata of (mean of x − mean of y)."""
    return lambda r: np.mean([a.mean(axis=1) - b.mean(axis=1) for a, b in zip(r[x], r[y])], axis=0)


def stat_poi(x: str = "x", y: str = "y") -> Callable[[Resampled], np.ndarray]:
    """Probability of improvement P(X > Y), ties count ½, averaged over strata."""

    def f(r: Resampled) -> np.ndarray:
        per = []
        for a, b in zip(r[x], r[y]):
            gt = (a[:, :, None] > b[:, None, :]).mean(axis=(1, 2))
            eq = (a[:, :, None] == b[:, None, :]).mean(axis=(1, 2))
            per.append(gt + 0.5 * eq)
        return np.mean(per, axis=0)

    return f


def poi(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) on one task (ties ½)."""
    return float(stat_poi()({"x": [np.asarray(x, float)[None, :]], "y": [np.asarray(y, float)[None, :]]})[0])


# ---------------------------------------------------------------------------------------------
# tables
@dataclass(frozen=True)
class BootstrapCfg:
    n_boot: int = 2000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> BootstrapCfg:
        b = cfg.get("bootstrap", {}) or {}
        return cls(int(b.get("n_boot", 2000)), float(b.get("confidence", 0.95)), int(b.get("seed", 0)))


def run_metrics(
    runs: pd.DataFrame, curves: pd.DataFrame, catalog: Any, cfg: Mapping[str, Any]
) -> pd.DataFrame:
    """One row per run with final / normalised / AUC / steps-to-threshold / drop counts.

    ``used`` says whether the run enters the statistics: missing runs never do; a failed
    (diverged) run scores the random score from its failure on (``failed_runs: random``),
    keeps its last evaluation (``last``) or is left out (``exclude``) — and is counted anyway.
    """
    policy = cfg.get("failed_runs", "random")
    drop = float((cfg.get("C3", {}) or {}).get("drop_fraction", 0.1))
    by_run = (
        {k: g for k, g in curves.groupby(["algo", "env", "seed", "setting"], sort=False)}
        if len(curves)
        else {}
    )
    rows = []
    for r in runs.itertuples(index=False):
        row = {
            c: getattr(r, c)
            for c in (
                "algo",
                "base_algo",
                "impl",
                "variant",
                "env",
                "seed",
                "setting",
                "status",
                "total_steps",
            )
        }
        spec = catalog.envs.get(r.env) if catalog is not None else None
        thr = spec.threshold if spec else float("nan")
        rnd = spec.random_score if spec else float("nan")
        row.update(
            threshold=thr,
            random_score=rnd,
            used=False,
            final_return=np.nan,
            norm_final=np.nan,
            auc_norm=np.nan,
            steps_to_threshold=np.nan,
            reached=False,
            n_evals=0,
            n_deltas=0,
            n_sig_drops=0,
            drop_frac=np.nan,
            note="",
        )
        c = by_run.get((r.algo, r.env, r.seed, r.setting))
        if r.status == "missing":
            row["note"] = "missing"
        elif c is None or c["eval_return"].notna().sum() == 0:
            row["note"] = "no evaluation"
        elif r.status == "failed" and policy == "exclude":
            row["note"] = "failed: excluded (failed_runs: exclude)"
        else:
            c = c.dropna(subset=["step", "eval_return"]).sort_values("step")
            steps, vals = c["step"].to_numpy(float), c["eval_return"].to_numpy(float)
            norm = normalise(vals, rnd, thr)
            n_drop, n_d = significant_drops(norm, drop)
            t_max = float(r.total_steps) if pd.notna(r.total_steps) and r.total_steps else float(steps[-1])
            final = vals[-1]
            a_steps, a_norm = steps, norm
            if r.status == "failed" and policy == "random":
                final = rnd
                a_steps, a_norm = np.r_[steps, steps[-1]], np.r_[norm, 0.0]
                row["note"] = "failed: random score after divergence"
            elif r.status == "failed":
                row["note"] = "failed: last evaluation kept"
            row.update(
                used=True,
                final_return=final,
                norm_final=float(normalise(final, rnd, thr)),
                auc_norm=auc(a_steps, a_norm, t_max, v0=0.0),
                steps_to_threshold=steps_to_threshold(steps, vals, thr),
                n_evals=len(vals),
                n_deltas=n_d,
                n_sig_drops=n_drop,
                drop_frac=(n_drop / n_d) if n_d else np.nan,
            )
            row["reached"] = bool(np.isfinite(row["steps_to_threshold"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _strata(m: pd.DataFrame, algo: str, col: str, envs: Sequence[str]) -> list[np.ndarray]:
    out = []
    for e in envs:
        v = m.loc[(m["algo"] == algo) & (m["env"] == e) & m["used"], col].to_numpy(float)
        out.append(v[np.isfinite(v)])
    return out


def stats_table(metrics: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Per env × algorithm, plus an ``ALL`` row per algorithm pooled over its envs."""
    b = BootstrapCfg.from_cfg(cfg)
    m = metrics[is_main(metrics["setting"])] if "setting" in metrics else metrics
    rows = []

    def boot(groups, stat):
        try:
            return stratified_bootstrap(groups, stat, b.n_boot, b.confidence, b.seed)
        except ValueError:
            return None

    for (env, algo), g in m.groupby(["env", "algo"], sort=True):
        used = g[g["used"]]
        row = {
            "env": env,
            "algo": algo,
            **{k: g.iloc[0][k] for k in ("base_algo", "impl", "variant")},
            "n_envs": 1,
            **count_status(g["status"]),
            "n_used": len(used),
            "threshold": g.iloc[0]["threshold"],
            "random_score": g.iloc[0]["random_score"],
        }
        fin = used["final_return"].to_numpy(float)
        row.update(
            final_mean=fin.mean() if len(fin) else np.nan,
            final_std=fin.std(ddof=1) if len(fin) > 1 else np.nan,
            final_median=np.median(fin) if len(fin) else np.nan,
        )
        for col, name in (("final_return", "final"), ("norm_final", "norm_final"), ("auc_norm", "auc_norm")):
            v = used[col].to_numpy(float)
            v = v[np.isfinite(v)]
            e_iqm = boot({"x": [v]}, stat_iqm()) if len(v) else None
            e_mean = boot({"x": [v]}, stat_mean()) if len(v) else None
            row[f"{name}_iqm"], row[f"{name}_iqm_lo"], row[f"{name}_iqm_hi"] = (
                (e_iqm.point, e_iqm.lo, e_iqm.hi) if e_iqm else (np.nan,) * 3
            )
            if name != "final":
                row[f"{name}_mean"] = e_mean.point if e_mean else np.nan
            row[f"{name}_mean_lo"], row[f"{name}_mean_hi"] = (
                (e_mean.lo, e_mean.hi) if e_mean else (np.nan,) * 2
            )
        stt = used["steps_to_threshold"].to_numpy(float)
        stt_c = np.where(np.isfinite(stt), stt, np.inf)
        med = np.median(stt_c) if len(stt_c) else np.nan
        row.update(
            steps_to_threshold_median=med if np.isfinite(med) else np.nan,
            frac_reached=float(np.isfinite(stt).mean()) if len(stt) else np.nan,
            drop_frac_mean=float(np.nanmean(used["drop_frac"]))
            if used["drop_frac"].notna().any()
            else np.nan,
        )
        rows.append(row)
    # aggregate over envs (stratified by env): normalised scores only
    for algo, g in m.groupby("algo", sort=True):
        envs = sorted(g.loc[g["used"], "env"].unique())
        row = {
            "env": "ALL",
            "algo": algo,
            **{k: g.iloc[0][k] for k in ("base_algo", "impl", "variant")},
            "n_envs": len(envs),
            **count_status(g["status"]),
            "n_used": int(g["used"].sum()),
        }
        for col in ("norm_final", "auc_norm"):
            strata = [s for s in _strata(g, algo, col, envs) if len(s)]
            e_iqm = boot({"x": strata}, stat_iqm()) if strata else None
            e_mean = boot({"x": strata}, stat_mean()) if strata else None
            row[f"{col}_iqm"], row[f"{col}_iqm_lo"], row[f"{col}_iqm_hi"] = (
                (e_iqm.point, e_iqm.lo, e_iqm.hi) if e_iqm else (np.nan,) * 3
            )
            row[f"{col}_mean"], row[f"{col}_mean_lo"], row[f"{col}_mean_hi"] = (
                (e_mean.point, e_mean.lo, e_mean.hi) if e_mean else (np.nan,) * 3
            )
        used = g[g["used"]]
        row["frac_reached"] = float(used["reached"].mean()) if len(used) else np.nan
        row["drop_frac_mean"] = (
            float(np.nanmean(used["drop_frac"])) if used["drop_frac"].notna().any() else np.nan
        )
        rows.append(row)
    cols = [
        "env",
        "algo",
        "base_algo",
        "impl",
        "variant",
        "n_envs",
        "n_planned",
        "n_ok",
        "n_failed",
        "n_missing",
        "n_used",
        "threshold",
        "random_score",
        "final_mean",
        "final_std",
        "final_median",
        "final_mean_lo",
        "final_mean_hi",
        "final_iqm",
        "final_iqm_lo",
        "final_iqm_hi",
        "norm_final_mean",
        "norm_final_mean_lo",
        "norm_final_mean_hi",
        "norm_final_iqm",
        "norm_final_iqm_lo",
        "norm_final_iqm_hi",
        "auc_norm_mean",
        "auc_norm_mean_lo",
        "auc_norm_mean_hi",
        "auc_norm_iqm",
        "auc_norm_iqm_lo",
        "auc_norm_iqm_hi",
        "steps_to_threshold_median",
        "frac_reached",
        "drop_frac_mean",
    ]
    return pd.DataFrame(rows).reindex(columns=cols)


# ---------------------------------------------------------------------------------------------
# stratified permutation test: the interval estimator of every comparison of two algorithms
# (claims C3–C6). Exact level under exchangeability, whatever the design (A/A simulation:
# analysis/calibrate.py); the percentile bootstrap above is ~2-4x anti-conservative at 3 runs.
@dataclass(frozen=True)
class PermutationCfg:
    n_perm: int = 4000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> PermutationCfg:
        t = cfg.get("permutation", {}) or {}
        conf = (cfg.get("bootstrap", {}) or {}).get("confidence", 0.95)
        return cls(int(t.get("n_perm", 4000)), float(t.get("confidence", conf)), int(t.get("seed", 0)))


def permutation_orders(sizes: Sequence[tuple[int, int]], n_perm: int, seed: int) -> list[np.ndarray]:
    """Per stratum, (1 + n_perm) × (n_x + n_y) orders of its runs; row 0 is the identity (the
    observed split: the first n_x are x). Drawn once and shared by every design and shift."""
    rng = np.random.default_rng(seed)
    out = []
    for nx, ny in sizes:
        o = np.argsort(rng.random((n_perm, nx + ny)), axis=1)
        out.append(np.vstack([np.arange(nx + ny)[None, :], o]))
    return out


def permutation_stats(
    x: Sequence[np.ndarray], y: Sequence[np.ndarray], stat: str, shift: Any, orders: Sequence[np.ndarray]
) -> np.ndarray:
    """T(x − Δ, y) for every order: (designs, 1 + n_perm); column 0 is the observed T.

    x[e], y[e]: (designs × runs) scores in stratum e; Δ = ``shift`` (scalar or one per design).
    T = mean over strata of T_e; "diff": T_e = mean(x_e − Δ) − mean(y_e); "poi": T_e = P(X_e − Δ > Y_e)
    with ties ½ = (R_x − n_x(n_x + 1)/2) / (n_x n_y), R_x the sum of the x runs' midranks (Mann–Whitney U).
    """
    total: Any = 0.0
    d = np.reshape(np.asarray(shift, dtype=float), (-1, 1))
    for a, b, o in zip(x, y, orders):
        z = np.concatenate([np.asarray(a, float) - d, np.broadcast_to(b, (len(a), b.shape[1]))], axis=1)
        nx, ny = a.shape[1], b.shape[1]
        if stat == "poi":
            z = sps.rankdata(z, axis=1)
        # Σ of x's runs under every order, one x slot at a time (rows of zᵀ: contiguous gathers, no
        # designs × orders × n_x temporary; the same sums, in the same order, as z[:, o[:, :nx]].sum(-1))
        zt = np.ascontiguousarray(z.T)
        sx = zt[o[:, 0]]
        for j in range(1, nx):
            sx += zt[o[:, j]]
        sx = sx.T
        total = total + (
            (sx - nx * (nx + 1) / 2) / (nx * ny) if stat == "poi" else sx / nx - (z.sum(1)[:, None] - sx) / ny
        )
    return total / len(x)


def permutation_pvalues(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p-values from ``permutation_stats`` rows: p_greater = #{T_π ≥ T_obs} / (1 + n_perm)
    (the observed order counted), p_less = #{T_π ≤ T_obs} / (1 + n_perm)."""
    obs = t[:, :1]
    tol = 1e-9 * np.maximum(1.0, np.abs(obs))
    return (t >= obs - tol).mean(1), (t <= obs + tol).mean(1)


def _bisect(f: Callable[[float], bool], lo: float, hi: float, iters: int = 50) -> float:
    """The boundary of a monotone predicate: f(lo) is False, f(hi) is True."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if f(mid) else (mid, hi)
    return 0.5 * (lo + hi)


def permutation_estimate(
    x: Strata, y: Strata, stat: str, support_above: float, refute_below: float, pc: PermutationCfg
) -> Estimate:
    """Point estimate, interval and threshold p-values of a stratified two-sample permutation test.

    Shift model: X − Δ and Y exchangeable within every stratum. The interval is the set of Δ that
    neither one-sided test rejects at α/2 = (1 − confidence)/2 (for "diff", a CI of the mean difference;
    ±∞ where even the most extreme split is not significant). For "poi" it is mapped to the PoI scale
    by π(Δ) = P(X − Δ̂ + Δ > Y) (Δ̂: the shift that makes P(X − Δ̂ > Y) = ½), and the thresholds
    must be ½ (⇔ Δ = 0). p_greater tests H0 "effect ≤ support_above", p_less H0 "effect ≥ refute_below".
    """
    xs = [np.asarray(a, dtype=float)[None, :] for a in x]
    ys = [np.asarray(b, dtype=float)[None, :] for b in y]
    if stat == "poi" and (support_above != 0.5 or refute_below != 0.5):
        raise ValueError("the permutation test of P(X > Y) judges against ½ only")
    s_sup, s_ref = (0.0, 0.0) if stat == "poi" else (float(support_above), float(refute_below))
    orders = permutation_orders([(a.shape[1], b.shape[1]) for a, b in zip(xs, ys)], pc.n_perm, pc.seed)

    def pv(d: float) -> tuple[float, float]:
        g, le = permutation_pvalues(permutation_stats(xs, ys, stat, d, orders))
        return float(g[0]), float(le[0])

    def point(d: float) -> float:
        return float(permutation_stats(xs, ys, stat, d, [o[:1] for o in orders])[0, 0])

    alpha = (1 - pc.confidence) / 2
    lo_b = min(a.min() - b.max() for a, b in zip(xs, ys))
    hi_b = max(a.max() - b.min() for a, b in zip(xs, ys))
    pad = 1e-6 * max(1.0, hi_b - lo_b)
    lo_b, hi_b = lo_b - pad, hi_b + pad
    lo = -np.inf if pv(lo_b)[0] > alpha else _bisect(lambda d: pv(d)[0] > alpha, lo_b, hi_b)
    hi = np.inf if pv(hi_b)[1] > alpha else _bisect(lambda d: pv(d)[1] <= alpha, lo_b, hi_b)
    est = point(0.0)
    if stat == "poi":
        centre = _bisect(lambda d: point(d) < 0.5, lo_b, hi_b)
        lo = 0.0 if not np.isfinite(lo) else point(centre - lo)
        hi = 1.0 if not np.isfinite(hi) else point(centre - hi)
    n = {"x": int(sum(a.shape[1] for a in xs)), "y": int(sum(b.shape[1] for b in ys))}
    return Estimate(est, float(lo), float(hi), n, pv(s_sup)[0], pv(s_ref)[1])


def holm(p: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections at family-wise level ``alpha``: sort p ascending, reject the
    i-th (0-based) while p_(i) ≤ alpha / (k − i); NaN never rejects and does not count in k."""
    idx = [i for i in np.argsort(np.asarray(p, dtype=float)) if np.isfinite(p[i])]
    out = [False] * len(p)
    for rank, i in enumerate(idx):
        if p[i] > alpha / (len(idx) - rank):
            break
        out[i] = True
    return out


def compare(
    metrics: pd.DataFrame,
    x: str,
    y: str,
    col: str,
    stat: str,
    cfg: Mapping[str, Any],
    min_runs: int = 1,
    support_above: float | None = None,
    refute_below: float | None = None,
) -> tuple[Estimate | None, list[str], str]:
    """Estimate ``stat`` ("poi" or "diff") of algorithm x against y on ``col``, stratified over
    the envs where both have at least ``min_runs`` usable runs, with the stratified permutation
    test (``permutation_estimate``; thresholds default to the null: ½ for "poi", 0 for "diff").
    Returns (estimate, envs, why-none)."""
    null = 0.5 if stat == "poi" else 0.0
    sup = null if support_above is None else support_above
    ref = null if refute_below is None else refute_below
    m = metrics[is_main(metrics["setting"]) & metrics["used"] & metrics[col].notna()]
    ex, ey = set(m.loc[m["algo"] == x, "env"]), set(m.loc[m["algo"] == y, "env"])
    if not ex or not ey:
        missing = [a for a, e in ((x, ex), (y, ey)) if not e]
        return None, [], f"no usable runs of {', '.join(missing)}"
    common = sorted(ex & ey)
    if not common:
        return None, [], f"{x} and {y} share no env"
    envs = [
        e
        for e in common
        if min(len(s) for s in (_strata(m, x, col, [e])[0], _strata(m, y, col, [e])[0])) >= min_runs
    ]
    if not envs:
        return (
            None,
            [],
            f"fewer than {min_runs} usable runs per algorithm in every shared env ({', '.join(common)})",
        )
    est = permutation_estimate(
        _strata(m, x, col, envs), _strata(m, y, col, envs), stat, sup, ref, PermutationCfg.from_cfg(cfg)
    )
    return est, envs, ""


def poi_table(
    metrics: pd.DataFrame, cfg: Mapping[str, Any], cols: Sequence[str] = ("auc_norm", "norm_final")
) -> pd.DataFrame:
    """P(x > y) for every unordered pair of algorithms, per env and over their shared envs."""
    b = BootstrapCfg.from_cfg(cfg)
    m = metrics[is_main(metrics["setting"]) & metrics["used"]]
    rows = []
    algos = sorted(m["algo"].unique())
    for col in cols:
        mm = m[m[col].notna()]
        for i, x in enumerate(algos):
            for y in algos[i + 1 :]:
                common = sorted(set(mm.loc[mm["algo"] == x, "env"]) & set(mm.loc[mm["algo"] == y, "env"]))
                for envs, label in [([e], e) for e in common] + (
                    [(common, "ALL")] if len(common) > 1 else []
                ):
                    sx, sy = _strata(mm, x, col, envs), _strata(mm, y, col, envs)
                    est = stratified_bootstrap({"x": sx, "y": sy}, stat_poi(), b.n_boot, b.confidence, b.seed)
                    rows.append(
                        {
                            "env": label,
                            "metric": col,
                            "algo_x": x,
                            "algo_y": y,
                            "poi": est.point,
                            "ci_low": est.lo,
                            "ci_high": est.hi,
                            "n_x": est.n["x"],
                            "n_y": est.n["y"],
                            "n_envs": len(envs),
                        }
                    )
    return pd.DataFrame(
        rows,
        columns=["env", "metric", "algo_x", "algo_y", "poi", "ci_low", "ci_high", "n_x", "n_y", "n_envs"],
    )
