"""The figures that carry a claim's evidence in one picture each:

- learning curves, faceted: one row per env, one panel per algorithm family, each with our
  implementation (solid) against its reference (dashed: the SB3 one of the same base; A2C for
  ACER, claim C5; TRPO for NPG), mean over seeds with a percentile-bootstrap band (the tables'
  n_boot and seed, ``claims.yaml: bootstrap``), the legend outside the curves;
- the ACER ablations (claim C6) as effects: Δ = auc_norm(ablation) − auc_norm(acer) per ablation,
  the pooled estimate and its CI from the same stratified permutation test as the verdicts
  (``stats.compare``), per-env point estimates, and "INERT" where the ablated mechanism's activity
  in the full ACER runs is below C6's ``min_active`` (``analysis/mechanisms.py``: the verdicts
  judge no ablation there);
- the sweep (claim C4) with the robustness value R = mean / best over the grid and its bootstrap
  CI (``claims.robustness``, the number the verdict uses) in each panel's title.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import claims, mechanisms, stats
from analysis.aggregate import is_main
from analysis.comparisons import comparisons
from analysis.plotting import _figure, _main_algos, _save, mean_band, on_grid, on_time_grid, palette, placeholder
from analysis.sweeps import parse_slug

# the reference of an algorithm family that has no SB3 implementation of its own
REFERENCE = {"acer": "sb3-a2c", "npg": "trpo"}
def _bootstrap(cfg: Mapping[str, Any] | None) -> tuple[int, int]:
    b = stats.BootstrapCfg.from_cfg(cfg or {})
    return b.n_boot, b.seed


def families(algos: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(panel title, algorithms) per family: the algorithms of one base (ours and SB3's), plus the
    family's REFERENCE when it has no SB3 implementation; a family drawn only as another's
    reference gets no panel of its own."""
    by_base: dict[str, list[str]] = {}
    for a in sorted(algos, key=lambda a: (a.startswith("sb3-"), a)):  # ours first
        by_base.setdefault(a[4:] if a.startswith("sb3-") else a, []).append(a)
    shown: set[str] = set()
    out = []
    for base, members in by_base.items():
        ref = REFERENCE.get(base)
        group = members + ([ref] if ref in algos and ref not in members else [])
        if any(not m.startswith("sb3-") for m in members):
            out.append((" vs ".join(group), group))
            shown.update(group)
    out += [(" vs ".join(m), m) for m in by_base.values() if not set(m) <= shown]
    return out


def learning_curves(
    curves: pd.DataFrame, catalog: Any, path: str | Path, cfg: Mapping[str, Any] | None = None
) -> None:
    if curves.empty or _main_algos(curves).empty:
        return placeholder(path, "Learning curves", "no evaluation data")
    _learning_curves(_main_algos(curves), catalog, path, cfg)


@_figure
def _learning_curves(curves: pd.DataFrame, catalog: Any, path: str | Path, cfg: Mapping[str, Any] | None) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    g = on_grid(curves)
    n_boot, seed = _bootstrap(cfg)
    band = mean_band(g, "eval_return", ["env", "algo", "step"], n_boot=n_boot, seed=seed)
    envs, fams = sorted(g["env"].unique()), families(list(g["algo"].unique()))
    pal = palette(g["algo"].unique())
    fig, axes = plt.subplots(len(envs), len(fams), figsize=(3.4 * len(fams), 2.6 * len(envs)), squeeze=False)
    handles: dict[str, Any] = {}
    for i, env in enumerate(envs):
        thr = catalog.envs[env].threshold if catalog is not None and env in catalog.envs else float("nan")
        for j, (title, algos) in enumerate(fams):
            ax = axes[i, j]
            for algo in algos:
                b = band[(band["env"] == env) & (band["algo"] == algo)]
                if b.empty:
                    continue
                ls = "--" if algo.startswith("sb3-") or algo == REFERENCE.get(algos[0]) else "-"
                ax.plot(b["step"], b["mean"], ls=ls, c=pal[algo], lw=1.6)
                ax.fill_between(b["step"], b["lo"], b["hi"], color=pal[algo], alpha=0.2, lw=0)
                dash = "--" if algo.startswith("sb3-") else "-"
                handles.setdefault(algo, Line2D([], [], c=pal[algo], lw=1.6, ls=dash))
            if np.isfinite(thr):
                handles.setdefault("env threshold", ax.axhline(thr, ls=":", c="k", lw=1))
            ax.set_title(f"{env}: {title}" if i == 0 else env, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("environment steps" if i == len(envs) - 1 else "", fontsize=8)
            ax.set_ylabel("eval return" if j == 0 else "", fontsize=8)
    fig.suptitle("Learning curves: mean over seeds, 95% bootstrap band; solid ours, dashed its reference", y=1.0)
    n = band.groupby(["algo", "env"])["n"].max().groupby("algo").agg(["min", "max"])   # seeds: range over envs
    labels = [k if k not in n.index else f"{k} (n={n.at[k, 'min']})" if n.at[k, "min"] == n.at[k, "max"]
              else f"{k} (n={n.at[k, 'min']}–{n.at[k, 'max']})" for k in handles]
    fig.legend(list(handles.values()), labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def learning_curves_wallclock(
    curves: pd.DataFrame, catalog: Any, path: str | Path, cfg: Mapping[str, Any] | None = None
) -> None:
    c = _main_algos(curves) if not curves.empty else curves
    if c.empty or "train_s" not in c or c["train_s"].isna().all():
        return placeholder(path, "Learning curves against training time",
                           "no run recorded train_s (runs made before 2026-11-26)")
    _learning_curves_wallclock(c, catalog, path, cfg)


@_figure
def _learning_curves_wallclock(curves: pd.DataFrame, catalog: Any, path: str | Path,
                               cfg: Mapping[str, Any] | None) -> None:
    """One panel per env, every full algorithm: eval return against seconds of training on one core
    (train_s: the run's wall time less its evaluations), mean over seeds with the bootstrap band; each
    curve ends at its algorithm's shortest run, so where a curve stops is what that algorithm cost."""
    import matplotlib.pyplot as plt

    g = on_time_grid(curves)
    n_boot, seed = _bootstrap(cfg)
    band = mean_band(g, "eval_return", ["env", "algo", "train_s"], n_boot=n_boot, seed=seed)
    envs, pal = sorted(g["env"].unique()), palette(g["algo"].unique())
    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, env in zip(axes.flat, envs):
        thr = catalog.envs[env].threshold if catalog is not None and env in catalog.envs else float("nan")
        for algo, b in band[band["env"] == env].groupby("algo", sort=True):
            ls = "--" if algo.startswith("sb3-") else "-"
            ax.plot(b["train_s"], b["mean"], ls=ls, c=pal[algo], lw=1.6, label=f"{algo} (n={b['n'].max()})")
            ax.fill_between(b["train_s"], b["lo"], b["hi"], color=pal[algo], alpha=0.2, lw=0)
        if np.isfinite(thr):
            ax.axhline(thr, ls=":", c="k", lw=1)
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("seconds of training (one core; evaluation excluded)", fontsize=8)
        ax.set_ylabel("eval return", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, frameon=False)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.suptitle("Learning curves against training time: mean over seeds, 95% bootstrap band; "
                 "solid ours, dashed SB3", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def ablation_effects(metrics: pd.DataFrame, cfg: Mapping[str, Any], full: str = "acer") -> pd.DataFrame:
    """Δ = col(ablation) − col(full) per ACER ablation: the pooled estimate and CI of
    ``stats.compare`` (the verdicts' test) and the per-env mean differences. Descriptive: an env
    enters with ≥ 3 runs of each (the verdicts' ``min_runs`` gates verdicts, not this figure; the
    default matrix runs the ablations whose parts are inert with 3 seeds)."""
    col = next((c.metric for c in comparisons(cfg, "C6")), "auc_norm")
    m = metrics[is_main(metrics["setting"]) & metrics["used"]]
    rows = []
    for abl in sorted(a for a in m["algo"].unique() if a.startswith(f"{full}-")):
        est, envs, why = stats.compare(m, abl, full, col, "diff", cfg, min(3, int(cfg.get("min_runs", 3))))
        per_env = {
            e: float(g.loc[g["algo"] == abl, col].mean() - g.loc[g["algo"] == full, col].mean())
            for e, g in m.groupby("env")
            if (g["algo"] == abl).any() and (g["algo"] == full).any()
        }
        rows.append({"ablation": abl, "point": est.point if est else np.nan, "lo": est.lo if est else np.nan,
                     "hi": est.hi if est else np.nan, "per_env": per_env, "why": why})  # fmt: skip
    return pd.DataFrame(rows)


def acer_ablation(
    curves: pd.DataFrame,
    catalog: Any,
    path: str | Path,
    reference: Sequence[str] = ("sb3-a2c",),
    metrics: pd.DataFrame | None = None,
    updates: pd.DataFrame | None = None,
    cfg: Mapping[str, Any] | None = None,
) -> None:
    """``curves``/``catalog``/``reference`` are kept for the callers of the former curve figure;
    the effects come from ``metrics`` (run_metrics.csv) and ``updates`` (updates.parquet)."""
    if metrics is None or metrics.empty or not (metrics["algo"] == "acer").any():
        return placeholder(path, "ACER ablations", "no ACER runs (acer, acer-no-trunc, acer-no-tr, ...)")
    eff = ablation_effects(metrics, cfg or {})
    if eff.empty:
        return placeholder(path, "ACER ablations", "no ablation runs (acer-no-trunc, acer-no-tr, ...)")
    c6 = (cfg or {}).get("C6", {})
    _acer_ablation(eff, mechanisms.activity(updates, c6.get("full", "acer"), float(c6.get("min_active", 0.01))),
                   next((c.metric for c in comparisons(cfg or {}, "C6")), "auc_norm"), path)


@_figure
def _acer_ablation(eff: pd.DataFrame, fired: pd.DataFrame, col: str, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 0.8 * len(eff) + 1.6))
    pal = palette(eff["ablation"])
    finite = np.concatenate([eff[["lo", "hi", "point"]].to_numpy(float).ravel(),
                             [v for d in eff["per_env"] for v in d.values()]])  # fmt: skip
    finite = finite[np.isfinite(finite)]
    span = max(0.25, float(np.abs(finite).max()) * 1.15 if len(finite) else 1.0)
    for y, r in enumerate(eff.itertuples()):
        lo, hi = (max(r.lo, -span) if np.isfinite(r.lo) else -span), (min(r.hi, span) if np.isfinite(r.hi) else span)
        if np.isfinite(r.point):
            ax.plot([lo, hi], [y, y], c=pal[r.ablation], lw=2.5, solid_capstyle="butt")
            ax.plot(r.point, y, "o", c=pal[r.ablation], ms=8, mec="k")
            if not (np.isfinite(r.lo) and np.isfinite(r.hi)):
                ax.annotate("CI unbounded", (hi, y), xytext=(-4, 6), textcoords="offset points", ha="right",
                            fontsize=7)
        for v in r.per_env.values():
            ax.plot(v, y - 0.18, "|", c="k", ms=7)
        f = fired[fired["ablation"] == r.ablation] if not fired.empty else fired
        col = mechanisms.MECHANISM.get(r.ablation, ("",))[0]
        if r.ablation not in mechanisms.MECHANISM:
            note = ""
        elif f.empty or f["active"].isna().all():
            note = f"{col} not logged"
        else:
            quiet = [f"{e} {v:.2g}" for e, v, a in zip(f["env"], f["activity"], f["active"]) if a is False]
            note = (f"INERT in {', '.join(quiet)}: {mechanisms.MECHANISM[r.ablation][2]} below min_active"
                    if quiet else "active: " + ", ".join(f"{e} {v:.2g}" for e, v in zip(f["env"], f["activity"])))
        label = r.why or note
        ax.annotate(label, (span, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8,
                    color="crimson" if "INERT" in label else "0.3", weight="bold" if "INERT" in label else None)
    ax.axvline(0, c="k", lw=0.8)
    ax.set_xlim(-span, span)
    ax.set_yticks(range(len(eff)), eff["ablation"])
    ax.set_ylim(len(eff) - 0.5, -0.7)
    ax.set_xlabel(f"Δ {col} = ablation − full ACER (< 0: the ablation loses)")
    ax.set_title(f"ACER ablations (claim C6): Δ {col}, 95% CI of the verdicts' permutation test; | per env",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    _save(fig, path)


def sweep_robustness(
    sm: pd.DataFrame | None, col: str, path: str | Path, cfg: Mapping[str, Any] | None = None
) -> None:
    if sm is None or sm.empty or not sm["used"].any():
        return placeholder(path, "Hyper-parameter robustness", "no sweep runs (config `sweeps:`)")
    _sweep_robustness(sm[sm["used"]], col, path, cfg or {})


@_figure
def _sweep_robustness(sm: pd.DataFrame, col: str, path: str | Path, cfg: Mapping[str, Any]) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    algos = sorted(sm["algo"].unique())
    n_boot, seed = _bootstrap(cfg)
    min_runs = int(cfg.get("C4", {}).get("robust_min_runs", 2))
    fig, axes = plt.subplots(1, len(algos), figsize=(5.5 * len(algos), 4.4), squeeze=False)
    for ax, algo in zip(axes.flat, algos):
        g = sm[sm["algo"] == algo]
        est, why = claims.robustness(sm, algo, col, cfg, min_runs)
        r_txt = f"R = {est.text()}" if est is not None else f"R: – ({why})"
        keys = sorted({k for s in g["setting"] for k in parse_slug(s)})
        if len(keys) == 2:
            piv = g.groupby(keys)[col].mean().unstack(keys[1])
            sns.heatmap(piv, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": f"mean {col}"})
        else:
            x = keys[0] if len(keys) == 1 else "setting"
            order = sorted(g[x].unique(), key=lambda v: (float(v) if _is_num(v) else math.inf, str(v)))
            band = mean_band(g, col, [x], n_boot=n_boot, seed=seed).set_index(x).reindex(order)
            c = palette([algo])[algo]
            ax.errorbar(range(len(order)), band["mean"], yerr=[band["mean"] - band["lo"], band["hi"] - band["mean"]],
                        color=c, lw=2.5, marker="o", ms=8)   # the report's one bootstrap (mean_band)
            sns.stripplot(g, x=x, y=col, order=order, color="k", size=3, alpha=0.5, ax=ax)
            ax.tick_params(axis="x", rotation=25)
        ax.set_title(f"{algo}: mean {col} per setting\n{r_txt}", fontsize=9)
    fig.suptitle(
        f"Hyper-parameter robustness on {', '.join(sorted(sm['env'].unique()))} (claim C4): "
        "R = mean over the grid / best setting, 95% bootstrap CI over seeds"
        + (f"\n(best setting chosen on seeds {sel}, R scored on the other seeds; points: all seeds)"
           if (sel := (cfg.get("C4", {}) or {}).get("select_seeds")) else ""),
        y=1.02,
        fontsize=10,
    )
    fig.tight_layout()
    _save(fig, path)


def _is_num(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def claimed_pairs(cfg: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(claim, x, y) of every P(x > y) a claim makes (claims.yaml comparisons with stat poi)."""
    return [(c.claim, c.x, c.y) for c in comparisons(cfg) if c.stat == "poi"]


def aggregate(stats_tab: pd.DataFrame | None, poi_tab: pd.DataFrame | None, cfg: Mapping[str, Any],
              path: str | Path) -> None:  # fmt: skip
    """IQM of auc_norm across envs per algorithm (stats.csv, env = ALL) and the probability of
    improvement of each claimed comparison (poi.csv, env = ALL): the tables' own point estimates
    and stratified-bootstrap CIs, so that figure and tables show one bootstrap."""
    s = stats_tab[stats_tab["env"] == "ALL"] if stats_tab is not None and "env" in stats_tab else pd.DataFrame()
    if s.empty or "auc_norm_iqm" not in s or not s["auc_norm_iqm"].notna().any():
        return placeholder(path, "Aggregate scores", "no env = ALL rows in stats.csv")
    _aggregate(s, poi_tab if poi_tab is not None else pd.DataFrame(), cfg, path)


@_figure
def _aggregate(s: pd.DataFrame, poi_tab: pd.DataFrame, cfg: Mapping[str, Any], path: str | Path) -> None:
    import matplotlib.pyplot as plt

    s = s[s["auc_norm_iqm"].notna()].sort_values("auc_norm_iqm")
    pal = palette(s["algo"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * len(s) + 2.2), gridspec_kw={"width_ratios": [1.2, 1]})
    ax = axes[0]
    for y, r in enumerate(s.itertuples()):
        ax.plot([r.auc_norm_iqm_lo, r.auc_norm_iqm_hi], [y, y], c=pal[r.algo], lw=3, solid_capstyle="butt")
        ax.plot(r.auc_norm_iqm, y, "o", c=pal[r.algo], mec="k", ms=6)
    ax.set_yticks(range(len(s)), [f"{a} ({int(n)} envs)" for a, n in zip(s["algo"], s["n_envs"])], fontsize=8)
    ax.set_xlabel("IQM of auc_norm across runs and envs (1 = threshold all along)")
    ax.set_title("Interquartile mean, 95% stratified-bootstrap CI (stats.csv, env = ALL)", fontsize=9)
    ax = axes[1]
    rows = []
    pt = poi_tab[poi_tab["metric"] == "auc_norm"] if len(poi_tab) else poi_tab
    for claim, x, y in claimed_pairs(cfg):
        p = pt[(pt["algo_x"] == x) & (pt["algo_y"] == y)] if len(pt) else pt
        p = p[p["env"] == "ALL"] if (p["env"] == "ALL").any() or len(p) > 1 else p  # one env: its own row
        if len(p):
            rows.append((f"{claim}: P({x} > {y})", *p.iloc[0][["poi", "ci_low", "ci_high"]].astype(float)))
    for i, (_label, v, lo, hi) in enumerate(rows):
        ax.barh(i, v, color="0.75", height=0.5)
        ax.plot([lo, hi], [i, i], c="k", lw=2)
    ax.axvline(0.5, ls="--", c="k", lw=1)
    ax.set_xlim(0, 1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("probability of improvement on auc_norm (0.5: no difference)")
    title = "Claimed comparisons, 95% CI (poi.csv, env = ALL or the only env)"
    ax.set_title(title if rows else "no claimed pair in poi.csv", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
