"""The verdict machinery every claim shares: verdict values, a claim's parts, combining parts,
Holm's correction across a claim's parts, attaching each design's calibration, and the tables.
The claims themselves are in ``analysis/claims.py`` (C3–C6) and ``analysis/claims_toys.py`` (C1, C2, C7, C8).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from analysis.aggregate import is_main

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
INERT = "inert at this budget"   # a C6 part whose ablated mechanism never acted (analysis/mechanisms.py)

STATEMENTS = {
    "C1": "Natural gradient descent converges faster than gradient descent",
    "C2": "NPG improves drastically over vanilla policy gradient",
    "C3": "TRPO improves monotonically: KL ≤ δ on every update and fewer drops of the true objective J(π) "
    "than NPG, PPO and A2C",
    "C4": "PPO is more sample-efficient than TRPO, and robust to hyper-parameters",
    "C5": "ACER is more sample-efficient than A2C",
    "C6": "ACER ablations: the trust region is essential; truncation with bias correction matters least",
    "C7": "Compatible function approximation yields the natural gradient (the basis of NAC)",
    "C8": "K-FAC and conjugate gradient approximate the natural gradient at a fraction of the cost of inverting F",
}


# ---------------------------------------------------------------------------------------------
# verdict logic
def judge(lo: float, hi: float, support_above: float, refute_below: float) -> str:
    """supported if lo > support_above; not supported if hi < refute_below; else inconclusive."""
    if (
        lo is None
        or hi is None
        or (isinstance(lo, float) and math.isnan(lo))
        or (isinstance(hi, float) and math.isnan(hi))
    ):
        return INCONCLUSIVE
    if lo > support_above:
        return SUPPORTED
    if hi < refute_below:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """All parts supported → supported; any not supported → not supported; else inconclusive."""
    if not verdicts:
        return INCONCLUSIVE
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


@dataclass
class Part:
    name: str
    verdict: str
    metric: str
    test: str
    effect: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    runs_used: str = ""
    reason: str = ""
    # the test's one-sided p-values against the thresholds (permutation test; NaN for other parts)
    p_greater: float = float("nan")
    p_less: float = float("nan")
    # the design's A/A false-verdict rate and minimum detectable effect (analysis/calibrate.py)
    false_verdict_rate: float = float("nan")
    mde: float = float("nan")


@dataclass
class Claim:
    claim: str
    parts: list[Part] = field(default_factory=list)
    headline: Part | None = None  # what the claim row shows; the first part if None

    @property
    def verdict(self) -> str:
        return combine([p.verdict for p in self.parts])

    def row(self) -> dict[str, Any]:
        p0 = self.headline or (self.parts[0] if self.parts else Part("", INCONCLUSIVE, "", ""))
        reasons = [f"{p.name}: {p.reason}" for p in self.parts if p.reason]
        cal = next((p for p in self.parts if p.name == p0.name), p0)  # a headline copies a part's name
        return {
            "claim": self.claim,
            "statement": STATEMENTS.get(self.claim, ""),
            "verdict": self.verdict,
            "metric": p0.metric,
            "test": p0.test,
            "effect": p0.effect,
            "ci_low": p0.ci_low,
            "ci_high": p0.ci_high,
            "runs_used": "; ".join(
                dict.fromkeys(item for p in self.parts for item in p.runs_used.split("; ") if item)
            ),
            "parts": " | ".join(
                f"{p.name}: {p.verdict} ({_fmt(p.effect)} [{_fmt(p.ci_low)}, {_fmt(p.ci_high)}])"
                for p in self.parts
            ),
            "reason": " | ".join(reasons),
            "false_verdict_rate": cal.false_verdict_rate,
            "mde": cal.mde,
        }


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if abs(x) >= 1000 and float(x).is_integer():
        return f"{x:.0f}"
    return f"{x:.3g}"


def missing_part(name: str, metric: str, test: str, reason: str) -> Part:
    return Part(name, INCONCLUSIVE, metric, test, reason=reason)


def runs_used(metrics: pd.DataFrame | None, algos: Sequence[str], envs: Sequence[str] | None = None) -> str:
    """ "algo: used/planned runs (n envs), k failed, k missing" for each algorithm."""
    if metrics is None or metrics.empty:
        return ""
    m = metrics[is_main(metrics["setting"])] if "setting" in metrics else metrics
    out = []
    for a in algos:
        g = m[m["algo"] == a]
        if envs is not None:
            g = g[g["env"].isin(envs)]
        if g.empty:
            out.append(f"{a}: no runs")
            continue
        extra = [
            f"{int((g['status'] == s).sum())} {s}" for s in ("failed", "missing") if (g["status"] == s).any()
        ]
        out.append(
            f"{a}: {int(g['used'].sum())}/{len(g)} runs ({g['env'].nunique()} envs)"
            + (", " + ", ".join(extra) if extra else "")
        )
    return "; ".join(out)



# the claims
def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v) and not (isinstance(v, float) and math.isnan(v))



def apply_holm(claim: Claim, alpha: float) -> None:
    """A part stays "not supported" only if Holm's step-down over the p_less of all the claim's tested
    parts rejects it at family-wise level α (one "not supported" part refutes the whole claim)."""
    keep = stats.holm([p.p_less for p in claim.parts], alpha)
    n = sum(1 for p in claim.parts if np.isfinite(p.p_less))
    for p, k in zip(claim.parts, keep):
        if p.verdict == NOT_SUPPORTED and np.isfinite(p.p_less) and not k:
            p.verdict = INCONCLUSIVE
            p.reason = f"p = {p.p_less:.3g} against < threshold is not significant after Holm over {n} parts"


def attach_calibration(claim: Claim, cal: pd.DataFrame | None) -> None:
    """Copy each part's A/A false-verdict rate and MDE (calibration.csv); a design whose false-verdict
    rate exceeds the nominal level (beyond 2 Monte-Carlo SE) cannot give a verdict, nor can one where
    no effect reaches significance (MDE ∞): both say so and stay inconclusive."""
    if cal is None or cal.empty:
        return
    for p in claim.parts:
        if p.verdict == INERT:
            continue
        r = cal[(cal["claim"] == claim.claim) & (cal["part"] == p.name)]
        if r.empty or not int(r.iloc[0].get("n_sim", 0) or 0):
            continue
        r = r.iloc[0]
        p.false_verdict_rate, p.mde = float(r["false_verdict_rate"]), float(r["mde"])
        if not _truthy(r["calibrated"]):
            why = (
                f"uncalibrated design ({r['design']}): A/A false-verdict rate {p.false_verdict_rate:.3g} "
                f"> nominal {float(r['nominal']):.3g}: inconclusive"
            )
            p.verdict, p.reason = INCONCLUSIVE, why if not p.reason else f"{why}; {p.reason}"
        elif not np.isfinite(p.mde):
            p.verdict = INCONCLUSIVE
            p.reason = (
                f"underpowered design ({r['design']}): no effect can reach significance with these runs "
                f"(MDE ∞): inconclusive" + (f"; {p.reason}" if p.reason else "")
            )


CLAIM_COLUMNS = [
    "claim",
    "statement",
    "verdict",
    "metric",
    "test",
    "effect",
    "ci_low",
    "ci_high",
    "runs_used",
    "parts",
    "reason",
    "false_verdict_rate",
    "mde",
]


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    return pd.DataFrame([c.row() for c in claims], columns=CLAIM_COLUMNS)


def parts_table(claims: Sequence[Claim]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "claim": c.claim,
                "part": p.name,
                "verdict": p.verdict,
                "metric": p.metric,
                "test": p.test,
                "effect": p.effect,
                "ci_low": p.ci_low,
                "ci_high": p.ci_high,
                "runs_used": p.runs_used,
                "reason": p.reason,
                "p_greater": p.p_greater,
                "p_less": p.p_less,
                "false_verdict_rate": p.false_verdict_rate,
                "mde": p.mde,
            }
            for c in claims
            for p in c.parts
        ]
    )


def to_markdown(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    cols = list(columns or df.columns)

    def cell(v: Any) -> str:
        s = _fmt(v) if isinstance(v, float) else str(v)
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    return "\n".join(lines) + "\n"

