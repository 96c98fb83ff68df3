"""Claim verdicts computed from the data: one row per claim of the seed text.

C1  natural GD converges faster than GD                       (Gaussian manifold toy; claims_toys.py)
C2  NPG improves drastically over vanilla PG                  (Kakade's problems; claims_toys.py)
C3  TRPO improves monotonically: KL ≤ δ on every update, and fewer drops of the true objective
    J(π) than NPG, PPO and A2C (experiments/monotonic.py)
C4  PPO is more sample-efficient than TRPO, and robust to hyper-parameters (comparable sweeps,
    held-out selection)
C5  ACER is more sample-efficient than A2C
C6  ACER ablations: the trust region is essential; truncation with bias correction matters least,
    each judged only where its mechanism acts (mechanisms.py)
C7  compatible function approximation yields the natural gradient (exact tabular toys and the
    sampled NAC estimator; claims_toys.py)
C8  K-FAC and CG approximate the natural gradient at a fraction of the cost of inverting F (small
    softmax MLPs with the exact Fisher; claims_toys.py)

Each claim is made of parts; each part is an effect with a confidence interval judged against
the thresholds of ``experiments/config/claims.yaml`` (see ``judge``). Missing inputs make a
part inconclusive with the reason; nothing here is hand-written. The verdict values, parts,
Holm's correction and the tables live in ``analysis/verdicts.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import mechanisms, stats
from analysis.aggregate import is_main  # noqa: F401
from analysis.claims_toys import claim_c1, claim_c2, claim_c7, claim_c8  # noqa: F401  (re-exported)
from analysis.comparisons import Comparison, comparisons
from analysis.config import CLAIMS_YAML, deep_merge, load_config  # noqa: F401  (re-exported)
from analysis.verdicts import (  # noqa: F401  (re-exported: the verdict values and tables)
    CLAIM_COLUMNS,
    INCONCLUSIVE,
    INERT,
    NOT_SUPPORTED,
    STATEMENTS,
    SUPPORTED,
    Claim,
    Part,
    _fmt,
    _truthy,
    apply_holm,
    attach_calibration,
    claims_table,
    combine,
    judge,
    missing_part,
    parts_table,
    runs_used,
    to_markdown,
)


def _used_and_dropped(metrics: pd.DataFrame, x: str, y: str, envs: Sequence[str]) -> str:
    """runs_used over the envs the test used; the envs with runs that it did not use (too few runs
    of one side, say) follow with their own counts, so a failed or missing run stays visible."""
    used = runs_used(metrics, [x, y], envs)
    dropped = sorted(set(metrics.loc[metrics["algo"].isin([x, y]), "env"]) - set(envs))
    return used + (f"; not used: {', '.join(dropped)} ({runs_used(metrics, [x, y], dropped)})" if dropped else "")


def _compare_part(
    name: str,
    metrics: pd.DataFrame | None,
    x: str,
    y: str,
    col: str,
    stat: str,
    cfg: Mapping[str, Any],
    support_above: float,
    refute_below: float,
    metric: str,
) -> Part:
    pc = stats.PermutationCfg.from_cfg(cfg)
    alpha = (1 - pc.confidence) / 2
    what = f"probability of improvement P({x} > {y})" if stat == "poi" else f"mean difference {x} − {y}"
    test = (
        f"{what}, stratified permutation test over envs (one-sided α = {alpha:.3g} each way, Holm over the "
        f"claim's parts before 'not supported'); {int(pc.confidence * 100)}% CI by test inversion"
    )
    if metrics is None or metrics.empty:
        return missing_part(name, metric, test, "no runs")
    try:
        est, envs, why = stats.compare(
            metrics, x, y, col, stat, cfg, int(cfg.get("min_runs", 3)), support_above, refute_below
        )
    except ValueError as e:  # a P(X > Y) threshold other than ½
        return Part(name, INCONCLUSIVE, metric, test, runs_used=runs_used(metrics, [x, y]), reason=str(e))
    if est is None:
        return Part(name, INCONCLUSIVE, metric, test, runs_used=runs_used(metrics, [x, y]), reason=why)
    v = SUPPORTED if est.p_greater <= alpha else NOT_SUPPORTED if est.p_less <= alpha else INCONCLUSIVE
    reason = (
        ""
        if v == SUPPORTED
        else (
            f"not significant either way (p = {est.p_greater:.3g} against > {support_above}, "
            f"{est.p_less:.3g} against < {refute_below})"
            if v == INCONCLUSIVE
            else f"significantly below {refute_below} (p = {est.p_less:.3g})"
        )
    )
    return Part(
        name,
        v,
        metric,
        test + f" ({len(envs)} envs: {', '.join(envs)})",
        est.point,
        est.lo,
        est.hi,
        _used_and_dropped(metrics, x, y, envs),
        reason,
        est.p_greater,
        est.p_less,
    )


def kl_part(updates: pd.DataFrame | None, cfg: Mapping[str, Any]) -> Part:
    """C3's "KL ≤ δ": every accepted update of ``C3.algo`` has a logged KL ≤ δ·(1 + kl_slack)."""
    c = cfg.get("C3", {})
    algo = c.get("algo", "trpo")
    slack = float(c.get("kl_slack", 0.0))
    kl_metric, kl_test = "max over updates of KL / δ", f"every accepted update: KL ≤ δ·(1 + {slack})"
    u = None if updates is None or updates.empty else updates[updates["algo"] == algo]
    if u is None or u.empty or "kl" not in u or "max_kl" not in u:
        return (
            missing_part("KL ≤ δ", kl_metric, kl_test, f"no {algo} updates with kl and max_kl columns")
        )
    else:
        u = u[
            pd.to_numeric(u["kl"], errors="coerce").notna()
            & pd.to_numeric(u["max_kl"], errors="coerce").notna()
        ]
        n_rejected = 0
        if "step_accepted" in u:
            acc = pd.to_numeric(u["step_accepted"], errors="coerce").fillna(1) > 0
            n_rejected = int((~acc).sum())
            u = u[acc]
        if u.empty:
            return (missing_part("KL ≤ δ", kl_metric, kl_test, f"no accepted {algo} update logged kl"))
        else:
            ratio = u["kl"].astype(float) / u["max_kl"].astype(float)
            bad = int((u["kl"].astype(float) > u["max_kl"].astype(float) * (1 + slack)).sum())
            v = NOT_SUPPORTED if bad else SUPPORTED
            n_runs = u.groupby(["env", "seed"]).ngroups
            return (
                Part(
                    "KL ≤ δ",
                    v,
                    kl_metric,
                    kl_test,
                    float(ratio.max()),
                    float("nan"),
                    float("nan"),
                    f"{algo}: {len(u)} accepted updates in {n_runs} runs ({n_rejected} rejected steps)",
                    f"{bad} of {len(u)} updates exceed δ" if bad else "",
                )
            )


def robustness_strata(
    sweep_metrics: pd.DataFrame, algo: str, col: str, cfg: Mapping[str, Any], min_runs: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray] | None, str]:
    """(the held-out scores (clipped ≥ 0) of each grid point, the selection seeds' scores of the same
    grid points or None without ``C4.select_seeds``, why there are none): what ``robustness``
    bootstraps, and what its calibration resamples (analysis/calibrate.py).

    With ``C4.select_seeds`` the best grid point is *selected* on those seeds and every grid point is
    *scored* on the others (held out), so that R is not biased up by picking the luckiest setting on
    the seeds that also score it."""
    m = sweep_metrics[(sweep_metrics["algo"] == algo) & sweep_metrics["used"] & sweep_metrics[col].notna()]
    select = set(int(s) for s in (cfg.get("C4", {}) or {}).get("select_seeds", []) or [])
    sel = None
    if select:
        sel = m[m["seed"].astype(int).isin(select)]
        m = m[~m["seed"].astype(int).isin(select)]
        if sel.empty:
            return [], None, f"no sweep runs of {algo} on the selection seeds {sorted(select)}"
    groups = {k: np.clip(g[col].to_numpy(float), 0, None) for k, g in m.groupby("setting", sort=True)}
    groups = {k: v for k, v in groups.items() if len(v) >= min_runs}
    keys = list(groups)
    chosen = [sel.loc[sel["setting"] == k, col].to_numpy(float) for k in keys] if sel is not None else None
    if len(groups) < 2 or (sel is not None and sel.groupby("setting")[col].mean().idxmax() not in groups):
        return [], None, f"fewer than 2 sweep settings of {algo} with ≥ {min_runs} usable held-out runs"
    return [groups[k] for k in keys], chosen, ""


def best_of(chosen: list[np.ndarray] | None) -> int | None:
    """The grid point the selection seeds pick (highest mean; one with no selection run never)."""
    if chosen is None:
        return None
    return int(np.argmax([a.mean() if len(a) else -np.inf for a in chosen]))


def robustness_estimate(strata: list[np.ndarray], ib: int | None, cfg: Mapping[str, Any]) -> stats.Estimate:
    """R = mean over grid points of the mean score / the best grid point's (the selected one, ``ib``,
    or the best of the resample), bootstrap over seeds within each grid point."""

    def stat(r: stats.Resampled) -> np.ndarray:
        means = np.stack([a.mean(axis=1) for a in r["x"]], axis=1)  # reps × settings
        best = means.max(axis=1) if ib is None else means[:, ib]
        return np.where(best > 0, means.mean(axis=1) / np.where(best > 0, best, 1.0), 0.0)

    b = stats.BootstrapCfg.from_cfg(cfg)
    return stats.stratified_bootstrap({"x": strata}, stat, b.n_boot, b.confidence, b.seed)


def robustness(
    sweep_metrics: pd.DataFrame, algo: str, col: str, cfg: Mapping[str, Any], min_runs: int = 1
) -> tuple[stats.Estimate | None, str]:
    """R of ``algo`` on its sweep (``robustness_strata``, ``robustness_estimate``), or why not."""
    strata, chosen, why = robustness_strata(sweep_metrics, algo, col, cfg, min_runs)
    return (robustness_estimate(strata, best_of(chosen), cfg), "") if strata else (None, why)


def robustness_part(sweep_metrics: pd.DataFrame | None, cfg: Mapping[str, Any]) -> Part:
    """C4's "robustness": R of the x of C4's comparison (PPO) on its sweep, against its thresholds; the
    y's (TRPO's) R beside it."""
    c = cfg.get("C4", {})
    first = next(iter(comparisons(cfg, "C4")), None)
    algo, base = (first.x, first.y) if first else ("ppo", "trpo")
    parts: list[Part] = []
    rcol = c.get("robust_metric", "norm_final")
    sel = (c.get("select_seeds") or [])
    r_metric = f"R = mean / best over the sweep grid of {rcol}" + (
        f" (best chosen on seeds {sel}, all scored on the others)" if sel else "")
    r_test = "bootstrap over (held-out) seeds within each grid point"
    if sweep_metrics is None or sweep_metrics.empty:
        parts.append(
            missing_part("robustness", r_metric, r_test, "no hyper-parameter sweep (config `sweeps:` absent)")
        )
    else:
        est, why = robustness(sweep_metrics, algo, rcol, cfg, int(c.get("robust_min_runs", 2)))
        other, _ = robustness(sweep_metrics, base, rcol, cfg, int(c.get("robust_min_runs", 2)))
        n = sweep_metrics[sweep_metrics["algo"].isin([algo, base])]
        used = "; ".join(
            f"sweep {a}: {int(g['used'].sum())}/{len(g)} runs, {g['setting'].nunique()} settings"
            for a, g in n.groupby("algo")
        )
        if est is None:
            parts.append(Part("robustness", INCONCLUSIVE, r_metric, r_test, runs_used=used, reason=why))
        else:
            v = judge(est.lo, est.hi, c.get("robust_support_above", 0.7), c.get("robust_refute_below", 0.5))
            ref = f"; {base}: R = {other.text()}" if other is not None else ""
            parts.append(
                Part(
                    "robustness",
                    v,
                    r_metric,
                    r_test,
                    est.point,
                    est.lo,
                    est.hi,
                    used + ref,
                    "" if v == SUPPORTED else f"R CI [{_fmt(est.lo)}, {_fmt(est.hi)}]{ref}",
                )
            )
    return parts[0]


def judge_comparison(comp: Comparison, metrics: pd.DataFrame | None, cfg: Mapping[str, Any],
                     monotonic: pd.DataFrame | None = None, activity: pd.DataFrame | None = None) -> Part:
    """THE evaluator of every entry of ``claims.yaml: comparisons``: the stratified permutation test of
    ``comp.x`` against ``comp.y`` on ``comp.metric``, on the envs where the mechanisms of ``comp.active``
    act (an "inert at this budget" part where none is left)."""
    data = monotonic if comp.data == "monotonic" and monotonic is not None else metrics
    label = comp.label or f"{comp.metric}: {comp.x} vs {comp.y}"
    if comp.data == "monotonic" and monotonic is None:
        label += " (no true-objective runs in this matrix: on the main runs' evaluations)"
    kw = dict(col=comp.metric, stat=comp.stat, cfg=cfg, support_above=comp.support_above,
              refute_below=comp.refute_below, metric=label)
    if comp.active and activity is not None:
        return _where_active(comp.part, data, activity, list(comp.active), comp.x, comp.y, **kw)
    return _compare_part(comp.part, data, comp.x, comp.y, **kw)


def _weakest(parts: list[Part], note: str) -> Part | None:
    """The comparison with the lowest CI bound, as the claim row's headline (the verdict needs all)."""
    est = [p for p in parts if not math.isnan(p.ci_low)]
    if not est:
        return None
    w = min(est, key=lambda p: p.ci_low)
    return Part(w.name, w.verdict, w.metric + f" (weakest comparison: {w.name}{note})", w.test, w.effect,
                w.ci_low, w.ci_high, w.runs_used, w.reason)


def _where_active(
    name: str, metrics: pd.DataFrame | None, act: pd.DataFrame, ablations: list[str], x: str, y: str, **kw: Any
) -> Part:
    """``_compare_part`` on the envs where every mechanism ``ablations`` remove is active in the full
    runs; "inert at this budget" when no env with runs of both x and y is left."""
    inert = mechanisms.inert_envs(act, ablations)
    if metrics is None or metrics.empty or not inert:
        return _compare_part(name, metrics, x, y, **kw)
    both = set(metrics.loc[metrics["algo"] == x, "env"]) & set(metrics.loc[metrics["algo"] == y, "env"])
    why = "; ".join(inert[e] for e in sorted(inert) if e in both)
    kept = metrics[~metrics["env"].isin(inert)]
    if not both - set(inert):
        return Part(name, INERT, kw["metric"],
                    "not tested: the removed mechanism is below C6.min_active in the full runs",
                    runs_used=runs_used(metrics, [x, y]),
                    reason=f"mechanism below min_active in every env with runs of both ({why})")
    part = _compare_part(name, kept, x, y, **kw)
    if why:
        part.reason = "; ".join(r for r in (part.reason, f"judged without the envs where it is inert ({why})") if r)
    return part


def judge_claim(claim: str, metrics: pd.DataFrame | None, cfg: Mapping[str, Any],
                updates: pd.DataFrame | None = None, monotonic: pd.DataFrame | None = None,
                sweep_metrics: pd.DataFrame | None = None) -> Claim:
    """One of C3–C6: its own checks (C3's KL ≤ δ, C4's robustness) followed by its entries of
    ``claims.yaml: comparisons``, each judged by ``judge_comparison`` (before Holm and calibration)."""
    c6 = cfg.get("C6", {}) or {}
    activity = mechanisms.activity(updates, c6.get("full", "acer"), float(c6.get("min_active", 0.01)))
    judged = [judge_comparison(c, metrics, cfg, monotonic, activity) for c in comparisons(cfg, claim)]
    if claim == "C3":
        return Claim("C3", [kl_part(updates, cfg), *judged], _weakest(judged, "; KL part in `parts`"))
    if claim == "C4":
        return Claim("C4", [*judged, robustness_part(sweep_metrics, cfg)])
    return Claim(claim, judged or [missing_part("comparison", "", "", f"no comparison of {claim} in claims.yaml")])


def evaluate(
    metrics: pd.DataFrame | None,
    updates: pd.DataFrame | None,
    cfg: Mapping[str, Any],
    gauss: pd.DataFrame | None = None,
    npg: pd.DataFrame | None = None,
    sweep_metrics: pd.DataFrame | None = None,
    calibration: pd.DataFrame | None = None,
    monotonic: pd.DataFrame | None = None,
    compat: pd.DataFrame | None = None,
    ng_approx: pd.DataFrame | None = None,
) -> list[Claim]:
    """Every claim: C1, C2, C7 and C8 on the toys, C3–C6 by ``judge_claim``; then Holm within each claim
    and each part's calibration."""
    out = [claim_c1(gauss, cfg), claim_c2(npg, cfg)] + [
        judge_claim(c, metrics, cfg, updates, monotonic, sweep_metrics) for c in ("C3", "C4", "C5", "C6")
    ] + [claim_c7(compat, cfg), claim_c8(ng_approx, cfg)]
    alpha = (1 - stats.PermutationCfg.from_cfg(cfg).confidence) / 2
    for c in out:
        apply_holm(c, alpha)
        attach_calibration(c, calibration)
    return out


def provenance(runs: pd.DataFrame | None, repo: Path | None = None) -> dict[str, str]:
    """Commit and date of claims.yaml's last change and of the runs (their summaries' git_commit, the
    most frequent one), and a warning when the thresholds changed after the runs they judge."""
    import subprocess

    repo = repo or CLAIMS_YAML.parent.parent.parent

    def git(*args: str) -> str:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20)
            return r.stdout.strip() if r.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            return ""

    rel = str(CLAIMS_YAML.relative_to(repo)) if CLAIMS_YAML.is_relative_to(repo) else str(CLAIMS_YAML)
    t_commit, _, t_date = git("log", "-1", "--format=%H %cI", "--", rel).partition(" ")
    dirty = bool(git("status", "--porcelain", "--", rel))
    commits = runs["git_commit"].dropna().astype(str) if runs is not None and "git_commit" in runs else pd.Series([])
    commits = commits[commits != ""]
    r_commit = commits.value_counts().index[0] if len(commits) else ""
    r_date = git("show", "-s", "--format=%cI", r_commit.split("-")[0]) if r_commit else ""
    warn = []
    if dirty:
        warn.append("claims.yaml has uncommitted changes: the thresholds are newer than every run")
    if t_date and r_date and pd.Timestamp(t_date) > pd.Timestamp(r_date):
        warn.append(f"the thresholds changed ({t_date[:10]}) after the runs they judge ({r_date[:10]})")
    if commits.nunique() > 1:
        warn.append(f"the runs come from {commits.nunique()} commits")
    return {"thresholds_commit": t_commit[:12], "thresholds_date": t_date, "runs_commit": r_commit[:12],
            "runs_date": r_date, "provenance_warning": "; ".join(warn)}  # fmt: skip


