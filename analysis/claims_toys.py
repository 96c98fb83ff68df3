"""Claims C1, C2 and C7 on the seed text's toys (experiments/toys): natural gradient descent
against gradient descent on the Gaussian manifold, NPG against vanilla PG on Kakade's problems
(judged on their values: no sampling error), and compatible function approximation against the
exact natural gradient (exact part judged on its value; the sampled estimator's convergence rate
with a bootstrap interval over seeds)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats import BootstrapCfg, Estimate
from analysis.verdicts import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Claim,
    Part,
    _fmt,
    _truthy,
    combine,
    judge,
    missing_part,
)


def _speedup(slow: float, fast: float) -> float:
    """Iterations ratio; a method that never got there counts as infinitely slow."""
    if not np.isfinite(fast):
        return 0.0 if np.isfinite(slow) else float("nan")
    if not np.isfinite(slow):
        return float("inf")
    return slow / fast if fast > 0 else float("inf")

def claim_c1(gauss: pd.DataFrame | None, cfg: Mapping[str, Any]) -> Claim:
    c = cfg.get("C1", {})
    metric, test = "iterations to tolerance: GD / NGD", "deterministic toy, each start judged"
    if gauss is None or gauss.empty:
        return Claim(
            "C1",
            [
                missing_part(
                    "speed-up",
                    metric,
                    test,
                    "no toy results (results/toys/gaussian_summary.csv; config `toys: false`?)",
                )
            ],
        )
    parts = []
    for start, g in gauss.groupby("start", sort=True):
        it = {
            r.method: (
                float(r.iterations_to_tol)
                if _truthy(r.converged) and pd.notna(r.iterations_to_tol)
                else float("inf")
            )
            for r in g.itertuples()
        }
        if "gd" not in it or "ngd" not in it:
            parts.append(missing_part(f"start {start}", metric, test, "gd or ngd row missing"))
            continue
        s = _speedup(it["gd"], it["ngd"])
        v = (
            INCONCLUSIVE
            if np.isnan(s)
            else judge(s, s, c.get("support_above", 1.5), c.get("refute_below", 1.0))
        )
        why = (
            ""
            if v == SUPPORTED
            else (
                "neither method converged"
                if np.isnan(s)
                else f"GD needs {_fmt(s)}x the iterations of NGD (support above "
                f"{c.get('support_above', 1.5)}, refute below {c.get('refute_below', 1.0)})"
            )
        )
        parts.append(
            Part(
                f"start {start}",
                v,
                metric,
                test,
                s,
                s,
                s,
                f"toy {start}: GD {_fmt(it['gd'])} vs NGD {_fmt(it['ngd'])} iterations",
                why,
            )
        )
    sp = [p.effect for p in parts if not math.isnan(p.effect)]
    head = None
    if sp:
        # a deterministic toy has no sampling error: no confidence interval, the spread is over starts
        head = Part(
            "all starts",
            combine([p.verdict for p in parts]),
            metric + f" (worst of {len(sp)} starts; range over starts {_fmt(min(sp))}–{_fmt(max(sp))}, not a CI)",
            "deterministic toy, each start judged; no confidence interval",
            min(sp),
        )
    return Claim("C1", parts, head)


def claim_c2(npg: pd.DataFrame | None, cfg: Mapping[str, Any]) -> Claim:
    """One part per problem of the toy (Kakade's two-state MDP, the chain of each length) under the
    primary step rule (``C2.rule``, default ``fixed``: each method at its best learning rate of one
    grid); speed-up = PG's iterations to the target / NPG's. PG not reaching the target within the
    budget gives the lower bound budget / NPG's. The secondary rule (KL-normalised steps) is reported
    beside each part, not judged."""
    c = cfg.get("C2", {})
    rule = c.get("rule", "fixed")
    sup, ref = c.get("support_above", 5.0), c.get("refute_below", 2.0)
    metric = f"iterations to the target: PG / NPG ({rule} step rule)"
    test = "deterministic toy (exact gradients), each problem judged"
    if npg is None or npg.empty:
        return Claim("C2", [missing_part("speed-up", metric, test,
                                         "no toy results (results/toys/npg_vs_pg_summary.csv; config `toys: false`?)")])
    t = npg.copy()
    for col, default in (("problem", "chain"), ("rule", rule), ("budget", float("nan"))):
        if col not in t:
            t[col] = default

    def its(g: pd.DataFrame) -> tuple[dict[str, float], float]:
        it = {r.method: float(r.iterations_to_target) if pd.notna(r.iterations_to_target) and
              str(r.iterations_to_target) != "" else float("inf") for r in g.itertuples()}  # fmt: skip
        return it, float(pd.to_numeric(g["budget"], errors="coerce").max())

    parts = []
    for problem, g in t[t["rule"] == rule].groupby("problem", sort=False):
        it, budget = its(g)
        if "pg" not in it or "npg" not in it:
            parts.append(missing_part(problem, metric, test, "pg or npg row missing"))
            continue
        s = _speedup(it["pg"], it["npg"])
        lo, hi = s, s
        if math.isinf(s) and np.isfinite(budget) and np.isfinite(it["npg"]):
            lo, hi = budget / max(it["npg"], 1.0), float("inf")  # PG did not reach within the budget
        v = INCONCLUSIVE if np.isnan(s) else judge(lo, hi, sup, ref)
        edge = g[g.get("rate_at_grid_edge", pd.Series(False, index=g.index)).astype(str).str.lower() == "true"]
        sec, _ = its(t[(t["rule"] != rule) & (t["problem"] == problem)])
        used = (f"{problem}: PG {_iters(it['pg'], budget)} vs NPG {_iters(it['npg'], budget)} iterations"
                + ("".join(f"; {m} rate {float(r):.3g}" for m, r in zip(g["method"], g["rate"])) if "rate" in g else "")
                + (f"; secondary (KL-normalised) rule: PG {_iters(sec.get('pg', math.inf), budget)} vs NPG "
                   f"{_iters(sec.get('npg', math.inf), budget)}" if sec else ""))  # fmt: skip
        why = "" if v == SUPPORTED else (
            "neither method reached the target" if np.isnan(s)
            else f"PG needs {_fmt(lo)}x{'+' if math.isinf(hi) else ''} the iterations of NPG "
                 f"(support above {sup}, refute below {ref})")  # fmt: skip
        if not edge.empty:
            why = (why + "; " if why else "") + (
                f"best rate of {', '.join(edge['method'])} at the edge of the grid (a wider grid may change it)")
        parts.append(Part(problem, v, metric, test, lo, lo, hi, used, why))
    if not parts:
        return Claim("C2", [missing_part("speed-up", metric, test, f"no rows of the {rule} rule")])
    w = min((p for p in parts if not math.isnan(p.effect)), key=lambda p: p.effect, default=parts[0])
    head = Part(f"{w.name} (weakest problem)", combine([p.verdict for p in parts]), metric + f" (weakest: {w.name})",
                test, w.effect, w.ci_low, w.ci_high, w.runs_used, w.reason)  # fmt: skip
    return Claim("C2", parts, head)


def _iters(n: float, budget: float) -> str:
    return _fmt(n) if np.isfinite(n) else (f"> {budget:.0f} (did not reach)" if np.isfinite(budget) else "never")




def error_cube(sampled: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(seeds × N × policies array of the Fisher-norm error, the sample sizes N)."""
    t = sampled.pivot_table(index="seed", columns=["n_samples", "problem", "theta"], values="f_rel_err")
    ns = np.array(sorted(set(t.columns.get_level_values(0))), dtype=float)
    return np.stack([t[n].to_numpy() for n in ns], 1), ns


def pooled_medians(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """B × N: for each row of seed indices (a multiset: a bootstrap draw repeats seeds), the median of
    x[seed, n, policy] pooled over its seeds and all policies, for every n; the value ``np.median`` of
    the gathered B × N × (k · policies) array gives, bit for bit, without gathering or partitioning it.

    Per n the S · P values are sorted once; a row's pooled multiset is those values weighted by how often
    the row draws each seed, so its order statistic of rank r is the first sorted value whose cumulative
    weight exceeds r, and the median is the mean of ranks ⌊(m − 1)/2⌋ and ⌊m/2⌋ (m = k · P), as
    ``np.median`` takes it. Non-finite values: ``np.median`` itself (its NaN propagation)."""
    B, k = rows.shape
    S, n_n, P = x.shape
    if not np.isfinite(x).all():
        sub = x[rows].transpose(0, 2, 1, 3).reshape(B, n_n, -1)
        return np.median(sub, axis=2)
    m = k * P
    dtype = np.int16 if m < 2**15 else np.int64          # cumulative weights ≤ m: small ints are faster
    counts = np.bincount((rows + S * np.arange(B)[:, None]).ravel(), minlength=B * S).reshape(B, S).astype(dtype)
    out = np.empty((B, n_n))
    for j in range(n_n):
        v = x[:, j, :].ravel()                          # seed-major: value i belongs to seed i // P
        order = np.argsort(v, kind="stable")
        cw = np.cumsum(counts[:, order // P], axis=1, dtype=dtype)   # B × S·P, in value order
        lo, hi = np.count_nonzero(cw <= (m - 1) // 2, axis=1), np.count_nonzero(cw <= m // 2, axis=1)
        out[:, j] = (v[order[lo]] + v[order[hi]]) / 2
    return out


def rates(x: np.ndarray, ns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """r = −slope of log(median error) on log N for each row of seed indices ``rows`` (B × k), the
    median pooled over the chosen seeds and all policies (least squares, vectorised over B)."""
    med = pooled_medians(x, rows)
    lx = np.log(ns) - np.log(ns).mean()
    return -(np.log(np.maximum(med, 1e-12)) @ lx) / (lx @ lx)


def rate_estimate(x: np.ndarray, ns: np.ndarray, seeds: np.ndarray, n_boot: int = 2000, seed: int = 0,
                  confidence: float = 0.95) -> Estimate:
    """r on the seeds ``seeds`` (indices into x) with a percentile-bootstrap interval resampling them
    (the same seeds for every N and policy: one draw is one set of independent repetitions)."""
    seeds = np.asarray(seeds, dtype=int)
    k = len(seeds)
    boots = rates(x, ns, seeds[np.random.default_rng(seed).integers(0, k, (n_boot, k))])
    a = 50 * (1 - confidence)
    lo, hi = np.percentile(boots, [a, 100 - a])
    return Estimate(float(rates(x, ns, seeds[None])[0]), float(lo), float(hi), {"seeds": k})


def convergence_rate(sampled: pd.DataFrame, n_boot: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float, float]:
    """−slope of log(median Fisher-norm error) on log N, pooled over policies and seeds, with a
    percentile-bootstrap 95 % interval resampling seeds."""
    x, ns = error_cube(sampled)
    e = rate_estimate(x, ns, np.arange(len(x)), n_boot, seed, confidence)
    return e.point, e.lo, e.hi


def claim_c7(compat: pd.DataFrame | None, cfg: Mapping[str, Any]) -> Claim:
    """Compatible function approximation yields the natural gradient (experiments/toys/compatible.py).
    ``exact``: the d π-weighted least-squares fit of Q on ψ = ∇ log π equals (1 − γ) F⁺g to rounding
    (max relative error ≤ ``C7.exact_tol``); ``sampled``: the Monte-Carlo estimator NAC uses converges to
    it: the Fisher-norm error's median falls with N at rate r (error ∝ N^(−r); Monte Carlo gives ½),
    supported if r's interval lies above ``C7.rate_support_above``, not supported below
    ``C7.rate_refute_below``."""
    c = cfg.get("C7", {})
    tol, sup, ref = c.get("exact_tol", 1e-8), c.get("rate_support_above", 0.25), c.get("rate_refute_below", 0.1)
    m_exact = "max relative error ‖w* − (1 − γ)F⁺g‖ / ‖(1 − γ)F⁺g‖ over problems and policies"
    m_rate = "r in median Fisher-norm error ∝ N^(−r) (Monte Carlo: ½)"
    t_exact = "deterministic toy (exact d, π, Q, F); each policy judged"
    t_rate = "log-log fit of the median error over N; 95 % percentile bootstrap over seeds"
    missing = "no toy results (results/toys/compatible.csv; config `toys: false`?)"
    if compat is None or compat.empty:
        return Claim("C7", [missing_part("exact", m_exact, t_exact, missing), missing_part("sampled", m_rate, t_rate,
                                                                                          missing)])
    ex, sm = compat[compat["kind"] == "exact"], compat[compat["kind"] == "sampled"]
    err = float(ex["rel_err"].max()) if len(ex) else float("nan")
    v = INCONCLUSIVE if np.isnan(err) else SUPPORTED if err <= tol else NOT_SUPPORTED
    exact = Part("exact", v, m_exact, t_exact, err, err, err,
                 f"{len(ex)} policies on {ex['problem'].nunique()} problems",
                 "" if v == SUPPORTED else f"relative error {_fmt(err)} > {tol:g}")
    if sm.empty:
        return Claim("C7", [exact, missing_part("sampled", m_rate, t_rate, "no sampled rows")])
    b = BootstrapCfg.from_cfg(cfg)
    r, lo, hi = convergence_rate(sm, b.n_boot, b.seed, b.confidence)
    v = judge(lo, hi, sup, ref)
    meds = sm.groupby("n_samples")["f_rel_err"].median()
    used = (f"{sm['seed'].nunique()} seeds × {len(sm.groupby(['problem', 'theta']))} policies; median error "
            + ", ".join(f"N={n}: {_fmt(e)}" for n, e in meds.items()))
    why = "" if v == SUPPORTED else f"rate {_fmt(r)} [{_fmt(lo)}, {_fmt(hi)}] (support above {sup}, refute below {ref})"
    return Claim("C7", [exact, Part("sampled", v, m_rate, t_rate, r, lo, hi, used, why)])


def claim_c8(approx: pd.DataFrame | None, cfg: Mapping[str, Any]) -> Claim:
    """CG and K-FAC approximate the natural gradient at a fraction of the cost of inverting F
    (experiments/toys/ng_approx.py). One part per method × damping λ: the worst cosine with the exact
    (F + λI)⁻¹g over widths and seeds, supported above ``C8.cosine_support_above``, not supported below
    ``C8.cosine_refute_below``; and a cost part: the largest FLOP ratio (approximation / forming and
    solving F) at the largest network, supported below ``C8.cost_support_below``, not supported above
    ``C8.cost_refute_above``. Deterministic given the seeds: judged on values, the spread is over seeds."""
    c = cfg.get("C8", {})
    sup, ref = c.get("cosine_support_above", 0.9), c.get("cosine_refute_below", 0.5)
    csup, cref = c.get("cost_support_below", 0.1), c.get("cost_refute_above", 0.5)
    metric = "cosine with (F + λI)⁻¹g (worst over widths × seeds)"
    test = "exact Fisher formed on small softmax MLPs; each method and λ judged on its worst case"
    if approx is None or approx.empty:
        return Claim("C8", [missing_part("approximation", metric, test,
                                         "no toy results (results/toys/ng_approx.csv; config `toys: false`?)")])
    parts = []
    names = {"cg": "CG (10 steps)", "kfac": "K-FAC"}
    for lam, g in approx.groupby("damping", sort=True):
        base = g[g["method"] == "gradient"]["cosine"]
        for m in ("cg", "kfac"):
            x = g[g["method"] == m]
            if x.empty:
                parts.append(missing_part(f"{names[m]}, λ {lam:g}", metric, test, f"no {m} rows"))
                continue
            worst, best = float(x["cosine"].min()), float(x["cosine"].max())
            v = judge(worst, worst, sup, ref)
            used = (f"{x['seed'].nunique()} seeds × widths {', '.join(str(w) for w in sorted(x['width'].unique()))}; "
                    f"cosine {_fmt(worst)}–{_fmt(best)}; the plain gradient's {_fmt(base.min())}–{_fmt(base.max())}")
            why = "" if v == SUPPORTED else f"worst cosine {_fmt(worst)} (support above {sup}, refute below {ref})"
            # a deterministic toy: the spread is over widths × seeds (in runs_used), not a confidence interval
            parts.append(Part(f"{names[m]}, λ {lam:g}", v, metric, test, worst, reason=why, runs_used=used))
    top = approx[(approx["width"] == approx["width"].max()) & approx["method"].isin(["cg", "kfac"])]
    ratio = float((top["flops"] / top["flops_exact"]).max())
    v = SUPPORTED if ratio < csup else NOT_SUPPORTED if ratio > cref else INCONCLUSIVE
    parts.append(Part("cost", v, "FLOPs of the approximation / of forming and solving F (largest network)",
                      "operation counts (not seconds)", ratio, float("nan"), float("nan"),
                      f"P = {int(top['n_params'].max())} parameters; "
                      + "; ".join(f"{names[m]} {_fmt(float((t['flops'] / t['flops_exact']).max()))}"
                                  for m, t in top.groupby("method")),
                      "" if v == SUPPORTED else f"ratio {_fmt(ratio)} (support below {csup}, refute above {cref})"))
    judged = [p for p in parts[:-1] if not math.isnan(p.effect)]
    if not judged:
        return Claim("C8", parts)
    w = min(judged, key=lambda p: p.effect)
    head = Part(f"{w.name} (weakest)", combine([p.verdict for p in parts]), metric + f" (weakest: {w.name})", test,
                w.effect, runs_used=w.runs_used, reason=w.reason)
    return Claim("C8", parts, head)
