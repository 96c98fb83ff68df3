"""Claims C1 and C2 on the seed text's deterministic toys (experiments/toys): natural gradient
descent against gradient descent on the Gaussian manifold, NPG against vanilla PG on Kakade's
problems. Judged on their values (no sampling error)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.verdicts import INCONCLUSIVE, SUPPORTED, Claim, Part, _fmt, _truthy, combine, judge, missing_part


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


