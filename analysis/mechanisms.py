"""Is the mechanism an ACER ablation removes active in the full algorithm's runs?

An ablation can only show what a mechanism is worth where the mechanism acts: on CartPole-v1 the
importance weights are truncated in 0.003 % of samples, so ``acer-no-trunc`` *is* ACER there, and
a comparison says nothing about truncation. Claim C6 therefore judges each ablation only on the
envs where the full algorithm's own diagnostics (progress.csv, one row per update) show the
mechanism active, and says "inert at this budget" where it is not (``analysis/claims.py``).

Activity per env, over every update of every run of the full algorithm:

- ``mean`` columns: the mean of a per-update fraction — ``frac_truncated`` (share of ρ_t > c that
  truncation clips), ``tr_effect`` (the change the trust-region projection makes to the policy
  gradient on the logits / (μ, log σ), relative to that gradient; not a share: above 1 when the
  projection overshoots). Not ``tr_active_frac`` (share of samples with kᵀg > δ):
  with the discrete φ = π(·|s), k ≈ −1 near π_avg = π is a direction the softmax ignores, so a
  projection can be "active" in every sample and change nothing;
- ``logged`` columns: the share of updates that logged the column at all — ``mean_rho_replay``
  is logged by every update that replays memory, so its share is how much of training used replay.

A mechanism is active when its activity reaches ``min_active`` (claims.yaml ``C6.min_active``).
Retrace has no such switch: Q^ret replaces the critic's target in every update, so
``acer-no-retrace`` is never inert. A column that was not logged leaves activity unknown (NaN):
the comparison is then made, and the row says the activity is unknown.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

# ablation → (diagnostic of the full runs, how activity is read from it, what "inert" means)
MECHANISM: Mapping[str, tuple[str, str, str]] = {
    "acer-no-trunc": ("frac_truncated", "mean", "ρ truncated"),
    "acer-no-tr": ("tr_effect", "mean", "gradient change by the trust region, relative"),
    "acer-no-replay": ("mean_rho_replay", "logged", "updates with replay"),
}
COLUMNS = ["env", "ablation", "column", "what", "activity", "max", "active"]


def activity(updates: pd.DataFrame | None, full: str = "acer", min_active: float = 0.01) -> pd.DataFrame:
    """Per env × ablation of ``MECHANISM``: the activity of the removed mechanism in ``full``'s runs,
    its per-update maximum, and whether it is active (True / False; NaN when not logged)."""
    rows = []
    u = updates[updates["algo"] == full] if updates is not None and "algo" in updates else pd.DataFrame()
    for env, g in u.groupby("env", sort=True) if not u.empty else []:
        for abl, (col, kind, what) in MECHANISM.items():
            if col not in g or pd.to_numeric(g[col], errors="coerce").isna().all() and kind == "mean":
                act, peak = np.nan, np.nan
            else:
                v = pd.to_numeric(g[col], errors="coerce")
                act = float(v.notna().mean()) if kind == "logged" else float(v.mean())
                peak = float(v.max()) if v.notna().any() else 0.0
            rows.append({"env": env, "ablation": abl, "column": col, "what": what, "activity": act, "max": peak,
                         "active": (act >= min_active) if np.isfinite(act) else np.nan})
    return pd.DataFrame(rows, columns=COLUMNS)


def inert_envs(act: pd.DataFrame, ablations: list[str]) -> dict[str, str]:
    """env → why, for the envs where any of ``ablations``' mechanisms is inert (known and below the bar)."""
    out: dict[str, str] = {}
    for r in act[act["ablation"].isin(ablations) & act["active"].eq(False)].itertuples():
        why = f"{r.what} {r.activity:.3g} ({r.column}) in {r.env}"
        out[r.env] = f"{out[r.env]}; {why}" if r.env in out else why
    return out
