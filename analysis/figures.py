"""Seaborn figures of the report (PNG, 120 dpi). Each function writes one file and never
fails for lack of data: it draws a placeholder that says what is missing instead. The shared
machinery (lock, colours, grids, bands) is in analysis/plotting.py; the learning curves, the ACER
ablation effects and the sweep robustness figure in analysis/figures_claims.py (re-exported here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.figures_claims import acer_ablation, learning_curves, sweep_robustness  # noqa: E402, F401
from analysis.plotting import (  # noqa: E402, F401
    BASE_COLORS,
    _figure,
    _main_algos,
    _save,
    _with_norm,
    bars_ci,
    mean_band,
    on_grid,
    palette,
    placeholder,
)


@_figure
def _sample_efficiency(m: pd.DataFrame, path: str | Path) -> None:
    m = m.copy()
    m["budget_frac"] = np.where(m["reached"], m["steps_to_threshold"] / m["total_steps"].astype(float), 1.08)
    envs = sorted(m["env"].unique())
    pal = palette(m["algo"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.2 * len(envs) + 6), 4.2))
    bars_ci(axes[0], m, "env", "auc_norm", envs, pal, hue="algo", hue_order=sorted(m["algo"].unique()))
    axes[0].axhline(1, ls=":", c="k", lw=1)
    axes[0].set_ylabel("normalised AUC (1 = threshold all along)")
    axes[0].set_title("Area under the eval curve, normalised")
    sns.stripplot(
        m,
        x="env",
        y="budget_frac",
        hue="algo",
        palette=pal,
        dodge=True,
        ax=axes[1],
        order=envs,
        size=6,
        jitter=0.15,
        legend=False,
    )
    axes[1].axhline(1, ls=":", c="k", lw=1)
    axes[1].set_ylim(0, 1.15)
    axes[1].set_ylabel("steps to threshold / budget (top: never)")
    axes[1].set_title("Steps to reach the env threshold (each run)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=20)
    axes[0].legend(fontsize=7, title=None)
    fig.tight_layout()
    _save(fig, path)


def sample_efficiency(metrics: pd.DataFrame, path: str | Path) -> None:
    m = _main_algos(metrics)
    m = m[m["used"]]
    if m.empty:
        return placeholder(path, "Sample efficiency", "no usable runs")
    _sample_efficiency(m, path)


def eval_deltas(curves: pd.DataFrame, catalog: Any) -> pd.DataFrame:
    """Change in normalised eval return between consecutive evaluations of each run."""
    c = _with_norm(_main_algos(curves), catalog).sort_values(["algo", "env", "seed", "step"])
    c["delta"] = c.groupby(["algo", "env", "seed"])["norm_return"].diff()
    return c.dropna(subset=["delta"])


def monotonic(
    curves: pd.DataFrame, metrics: pd.DataFrame, catalog: Any, drop: float, path: str | Path,
    what: str = "normalised eval return between evaluations",
) -> None:
    d = eval_deltas(curves, catalog)
    m = _main_algos(metrics)
    m = m[m["used"] & m["drop_frac"].notna()]
    if d.empty or m.empty:
        return placeholder(path, "Monotonic improvement", "fewer than two evaluations per run")
    _monotonic(d, m, drop, path, what)


@_figure
def _monotonic(d: pd.DataFrame, m: pd.DataFrame, drop: float, path: str | Path, what: str) -> None:
    order = sorted(d["algo"].unique())
    pal = palette(order)
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 1.4 * len(order) + 7), 4.2))
    lo = max(-1.5, float(d["delta"].quantile(0.005)) - 0.05)
    hi = min(1.5, float(d["delta"].quantile(0.995)) + 0.05)
    sns.violinplot(
        d,
        x="algo",
        y="delta",
        hue="algo",
        palette=pal,
        order=order,
        ax=axes[0],
        inner="quart",
        cut=0,
        density_norm="width",
        legend=False,
    )
    sns.stripplot(d, x="algo", y="delta", order=order, color="k", size=2, alpha=0.35, ax=axes[0], jitter=0.25)
    axes[0].axhline(-drop, ls="--", c="crimson", lw=1)
    axes[0].axhline(0, c="k", lw=0.6)
    axes[0].set_ylim(lo, hi)
    axes[0].set_ylabel(f"Δ {what}" if "per block" not in what else "Δ normalised J(π) per block")
    fig.suptitle(f"Claim C3: changes of {what}", fontsize=10)
    axes[0].set_title(f"Change per evaluation interval (red: significant drop, < −{drop})")
    bars_ci(axes[1], m, "algo", "drop_frac", order, pal)
    sns.stripplot(m, x="algo", y="drop_frac", order=order, color="k", size=3, alpha=0.5, ax=axes[1])
    axes[1].set_ylabel("fraction of intervals with a significant drop")
    axes[1].set_title("Significant drops per run (mean, 95% CI over runs)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=25)
        ax.set_xlabel("")
    fig.tight_layout()
    _save(fig, path)


def kl_vs_delta(updates: pd.DataFrame, path: str | Path) -> None:
    if updates.empty or "kl" not in updates or "max_kl" not in updates:
        return placeholder(path, "KL vs δ", "no update logs with kl and max_kl (TRPO / NPG runs)")
    u = updates[
        ["algo", "env", "seed", "step", "kl", "max_kl"]
        + (["step_accepted"] if "step_accepted" in updates else [])
    ].copy()
    u["kl"] = pd.to_numeric(u["kl"], errors="coerce")
    u["max_kl"] = pd.to_numeric(u["max_kl"], errors="coerce")
    u = u.dropna(subset=["kl", "max_kl"])
    u = u[u["max_kl"] > 0]
    if u.empty:
        return placeholder(path, "KL vs δ", "no update logs with kl and max_kl (TRPO / NPG runs)")
    _kl_vs_delta(u, path)


@_figure
def _kl_vs_delta(u: pd.DataFrame, path: str | Path) -> None:
    u = u.copy()
    u["kl_over_delta"] = u["kl"] / u["max_kl"]
    pal = palette(u["algo"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    sns.scatterplot(
        u,
        x="step",
        y="kl_over_delta",
        hue="algo",
        style="env" if u["env"].nunique() > 1 else None,
        palette=pal,
        s=10,
        alpha=0.5,
        linewidth=0,
        ax=axes[0],
    )
    axes[0].axhline(1, ls="--", c="k", lw=1)
    axes[0].set_ylabel("KL(π_old ‖ π_new) / δ")
    axes[0].set_xlabel("environment steps")
    axes[0].set_title("KL of every update relative to the trust region δ")
    axes[0].legend(fontsize=7)
    sns.ecdfplot(u, x="kl_over_delta", hue="algo", palette=pal, ax=axes[1])
    axes[1].axvline(1, ls="--", c="k", lw=1)
    frac = u.groupby("algo")["kl_over_delta"].apply(lambda s: float((s > 1).mean()))
    axes[1].set_title(
        "ECDF of KL / δ; above δ: " + ", ".join(f"{a} {f:.1%}" for a, f in frac.items()), fontsize=9
    )
    axes[1].set_xlabel("KL / δ")
    fig.tight_layout()
    _save(fig, path)


def toy_gaussian(traj: pd.DataFrame | None, path: str | Path) -> None:
    if traj is None or traj.empty:
        return placeholder(path, "NGD vs GD on the Gaussian manifold", "toy results absent")
    _toy_gaussian(traj, path)


@_figure
def _toy_gaussian(traj: pd.DataFrame, path: str | Path) -> None:
    t = traj.copy()
    pal = {m: BASE_COLORS.get(m, "C0") for m in t["method"].unique()}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for (method, start), g in t.groupby(["method", "start"], sort=True):
        g = g.sort_values("iter")
        ls = "-" if start == sorted(t["start"].unique())[0] else "--"
        axes[0].plot(
            g["mu"],
            g["sigma"],
            ls=ls,
            c=pal[method],
            lw=1.4,
            marker=".",
            markersize=3,
            label=f"{method.upper()} from {start} ({len(g) - 1} it.)",
        )
        axes[0].scatter(g["mu"].iloc[:1], g["sigma"].iloc[:1], c=pal[method], marker="o", s=40, zorder=3)
        axes[0].scatter(g["mu"].iloc[-1:], g["sigma"].iloc[-1:], c=pal[method], marker="*", s=90, zorder=3)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("μ")
    axes[0].set_ylabel("σ (log scale)")
    axes[0].set_title("Trajectories on the (μ, σ) plane (o start, * end)")
    axes[0].legend(fontsize=7)
    best = float(t["loss"].min())
    t["excess"] = np.clip(t["loss"] - best, 1e-12, None)
    t["it1"] = t["iter"] + 1
    sns.lineplot(t, x="it1", y="excess", hue="method", style="start", palette=pal, ax=axes[1], errorbar=None)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("iteration + 1")
    axes[1].set_ylabel("loss − min loss")
    axes[1].set_title("Convergence (claim C1)")
    fig.tight_layout()
    _save(fig, path)


def toy_npg(curve: pd.DataFrame | None, summary: pd.DataFrame | None, path: str | Path) -> None:
    if curve is None or curve.empty:
        return placeholder(path, "NPG vs PG", "toy results absent")
    _toy_npg(curve, summary, path)


@_figure
def _toy_npg(curve: pd.DataFrame, summary: pd.DataFrame | None, path: str | Path) -> None:
    c = curve.copy()
    c["it1"] = c["iter"] + 1
    if "problem" in c:  # one panel per problem; solid: fixed-rate rule (primary), dashed: KL rule
        probs = list(dict.fromkeys(c["problem"]))
        fig, axes = plt.subplots(1, len(probs), figsize=(3.2 * len(probs), 3.4), squeeze=False)
        for ax, pr in zip(axes.flat, probs):
            sns.lineplot(c[c["problem"] == pr], x="it1", y="J", hue="method", style="rule", ax=ax, errorbar=None,
                         palette={m: BASE_COLORS.get(m, "C0") for m in c["method"].unique()}, legend=ax is axes.flat[0])
            s = summary[summary["problem"] == pr] if summary is not None and "problem" in summary else None
            if s is not None and not s.empty:
                ax.axhline(float(s["target"].iloc[0]), ls=":", c="gray", lw=1)
            ax.set(xscale="log", xlabel="iteration + 1", ylabel="J(θ)", title=pr)
        fig.suptitle("NPG vs PG (claim C2): solid = best fixed rate per method (primary), dashed = same KL δ")
        fig.tight_layout()
        return _save(fig, path)
    pal = {m: BASE_COLORS.get(m, "C0") for m in c["method"].unique()}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sns.lineplot(c, x="it1", y="J", hue="method", palette=pal, ax=ax, errorbar=None)
    if summary is not None and not summary.empty:
        if "J_opt" in summary:
            ax.axhline(float(summary["J_opt"].iloc[0]), ls="--", c="k", lw=1, label="J*")
        if "target" in summary:
            ax.axhline(float(summary["target"].iloc[0]), ls=":", c="gray", lw=1, label="target")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("iteration + 1")
    ax.set_ylabel("J(θ)")
    ax.set_title("Natural vs vanilla policy gradient (claim C2)")
    fig.tight_layout()
    _save(fig, path)


def toy_compatible(rows: pd.DataFrame | None, path: str | Path) -> None:
    if rows is None or rows.empty:
        return placeholder(path, "compatible function approximation", "toy results absent")
    _toy_compatible(rows, path)


@_figure
def _toy_compatible(rows: pd.DataFrame, path: str | Path) -> None:
    s = rows[rows["kind"] == "sampled"].copy()
    s["policy"] = s["problem"] + " " + s["theta"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sns.lineplot(s, x="n_samples", y="f_rel_err", hue="policy", estimator="median", errorbar=("pi", 50), ax=ax,
                 marker="o")
    n = np.array(sorted(s["n_samples"].unique()), dtype=float)
    med0 = float(s[s["n_samples"] == n[0]]["f_rel_err"].median())
    ax.plot(n, med0 * (n / n[0]) ** -0.5, "k--", lw=1, label="∝ N^(−½) (Monte Carlo)")
    ex = rows[rows["kind"] == "exact"]["rel_err"]
    ax.set(xscale="log", yscale="log", xlabel="sampled (s, a) pairs N",
           ylabel="‖w − (1 − γ)F⁺g‖_F / ‖(1 − γ)F⁺g‖_F",
           title=f"Compatible features give F⁻¹∇J (claim C7); exact fit: error ≤ {ex.max():.1e}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def toy_ng_approx(rows: pd.DataFrame | None, path: str | Path) -> None:
    if rows is None or rows.empty:
        return placeholder(path, "CG and K-FAC vs the natural gradient", "toy results absent")
    _toy_ng_approx(rows, path)


@_figure
def _toy_ng_approx(rows: pd.DataFrame, path: str | Path) -> None:
    r = rows[rows["method"] != "exact"].copy()
    r["λ"] = r["damping"].map(lambda x: f"λ = {x:g}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    sns.stripplot(r, x="width", y="cosine", hue="method", dodge=True, ax=axes[0], size=4,
                  palette={"gradient": "0.6", "cg": "C0", "kfac": "C3"})
    for lam, ls in zip(sorted(r["damping"].unique()), ("-", ":")):
        g = r[r["damping"] == lam].groupby(["width", "method"])["cosine"].median().unstack()
        for m, c in (("cg", "C0"), ("kfac", "C3"), ("gradient", "0.6")):
            if m in g:
                axes[0].plot(range(len(g)), g[m].to_numpy(), ls=ls, c=c, lw=1)
    axes[0].set(ylim=(0, 1.02), xlabel="hidden width", ylabel="cosine with (F + λI)⁻¹g",
                title="solid: λ = 10⁻³, dotted: λ = 0.1 (medians)")
    c = r[r["method"] != "gradient"].groupby(["n_params", "method"]).apply(
        lambda t: float((t["flops"] / t["flops_exact"]).max()), include_groups=False).unstack()
    for m, col in (("cg", "C0"), ("kfac", "C3")):
        axes[1].plot(c.index, c[m], "o-", c=col, label=m)
    axes[1].set(xscale="log", yscale="log", xlabel="parameters P", ylabel="FLOPs / FLOPs of forming + solving F",
                title="cost")
    axes[1].legend(fontsize=8)
    fig.suptitle("How well CG and K-FAC approximate the natural gradient (claim C8)")
    fig.tight_layout()
    _save(fig, path)
