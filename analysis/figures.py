"""Seaborn figures of the report (PNG, 120 dpi). Each function writes one file and never
fails for lack of data: it draws a placeholder that says what is missing instead.

Snakemake runs ``run:`` blocks of local rules in threads; pyplot is not thread-safe, so every
figure is drawn under one lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.aggregate import algo_parts, is_main  # noqa: E402
from analysis.stats import normalise  # noqa: E402
from analysis.sweeps import parse_slug  # noqa: E402

DPI = 120
LOCK = threading.Lock()
BASE_COLORS = {
    "ppo": "#1f77b4",
    "trpo": "#d62728",
    "npg": "#8c564b",
    "acer": "#2ca02c",
    "a2c": "#9467bd",
    "gd": "#7f7f7f",
    "ngd": "#17becf",
    "pg": "#7f7f7f",
}
EXTRA = sns.color_palette("Set2", 8)
VARIANT_COLORS = ["#ff7f0e", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#9edae5"]


def _figure(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with LOCK, sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
            try:
                return fn(*args, **kwargs)
            finally:
                plt.close("all")

    return wrapper


def _save(fig: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


@_figure
def placeholder(path: str | Path, title: str, message: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.62, title, ha="center", va="center", fontsize=13, weight="bold", transform=ax.transAxes)
    ax.text(0.5, 0.32, message, ha="center", va="center", fontsize=10, wrap=True, transform=ax.transAxes)
    _save(fig, path)


def palette(algos: Sequence[str]) -> dict[str, Any]:
    """One colour per algorithm: ours and SB3 of the same base share a hue."""
    out, k = {}, 0
    for a in sorted(set(algos)):
        base = a[4:] if a.startswith("sb3-") else a
        if algo_parts(a)["variant"] != "full":  # ablations: colours of their own
            out[a] = VARIANT_COLORS[k % len(VARIANT_COLORS)]
            k += 1
        elif base in BASE_COLORS:
            rgb = np.array(matplotlib.colors.to_rgb(BASE_COLORS[base]))
            out[a] = tuple(rgb + (1 - rgb) * 0.45) if a.startswith("sb3-") else tuple(rgb)  # SB3: lighter
        else:
            out[a] = EXTRA[k % len(EXTRA)]
            k += 1
    return out


def _main_algos(df: pd.DataFrame) -> pd.DataFrame:
    """Full algorithms only (no ablation variants, no sweep runs)."""
    m = df[df["variant"] == "full"]
    return m[is_main(m["setting"])] if "setting" in m else m


def on_grid(curves: pd.DataFrame, value: str = "eval_return", n: int = 40) -> pd.DataFrame:
    """Every run's curve linearly interpolated on one grid of steps per env, inside the run's
    own range, so that seeds are averaged at the same steps."""
    out = []
    for env, ge in curves.groupby("env", sort=True):
        grid = np.linspace(0, ge["step"].max(), n + 1)[1:]
        for key, g in ge.groupby(["algo", "seed"], sort=True):
            g = g.dropna(subset=["step", value]).sort_values("step")
            if g.empty:
                continue
            s, v = g["step"].to_numpy(float), g[value].to_numpy(float)
            pts = grid[(grid >= s[0]) & (grid <= s[-1])]
            if len(pts) == 0 or len(s) == 1:
                pts = s
            first = g.iloc[0]
            out.append(
                pd.DataFrame(
                    {
                        "env": env,
                        "algo": key[0],
                        "seed": key[1],
                        "base_algo": first["base_algo"],
                        "impl": first["impl"],
                        "variant": first["variant"],
                        "step": pts,
                        value: np.interp(pts, s, v),
                    }
                )
            )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _with_norm(curves: pd.DataFrame, catalog: Any) -> pd.DataFrame:
    c = curves.copy()
    thr = c["env"].map(lambda e: catalog.envs[e].threshold if e in catalog.envs else np.nan)
    rnd = c["env"].map(lambda e: catalog.envs[e].random_score if e in catalog.envs else np.nan)
    c["norm_return"] = normalise(c["eval_return"], rnd.to_numpy(float), thr.to_numpy(float))
    return c


def mean_band(
    data: pd.DataFrame,
    value: str,
    by: Sequence[str],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean over seeds and percentile-bootstrap CI of the mean, per group (vectorised)."""
    rng = np.random.default_rng(seed)
    rows = []
    a = 100 * (1 - confidence) / 2
    for key, g in data.groupby(list(by), sort=True):
        v = g[value].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        boot = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
        lo, hi = np.percentile(boot, [a, 100 - a])
        rows.append({**dict(zip(by, key)), "mean": v.mean(), "lo": lo, "hi": hi, "n": len(v)})
    return pd.DataFrame(rows)


def _facet_lines(
    data: pd.DataFrame,
    value: str,
    ylabel: str,
    path: str | Path,
    title: str,
    hlines: dict[str, float] | None = None,
) -> None:
    envs = sorted(data["env"].unique())
    ncol = min(3, len(envs))
    nrow = int(np.ceil(len(envs) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.6 * nrow), squeeze=False)
    pal = palette(data["algo"].unique())
    band = mean_band(data, value, ["env", "algo", "step"])
    for ax, env in zip(axes.flat, envs):
        b = band[band["env"] == env]
        for algo, g in b.groupby("algo", sort=True):
            ls = "--" if algo.startswith("sb3-") else "-"
            n = int(g["n"].max())
            ax.plot(g["step"], g["mean"], ls=ls, c=pal[algo], lw=1.6, label=f"{algo} (n={n})")
            ax.fill_between(g["step"], g["lo"], g["hi"], color=pal[algo], alpha=0.18, lw=0)
        if hlines and env in hlines and np.isfinite(hlines[env]):
            ax.axhline(hlines[env], ls=":", c="k", lw=1, label="threshold")
        ax.set_title(env)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("environment steps")
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(envs) :]:
        ax.axis("off")
    fig.suptitle(title, y=1.01)
    fig.tight_layout()
    _save(fig, path)


@_figure
def _learning_curves(curves: pd.DataFrame, catalog: Any, path: str | Path) -> None:
    g = on_grid(_main_algos(curves))
    hl = {e: s.threshold for e, s in catalog.envs.items()}
    _facet_lines(
        g,
        "eval_return",
        "eval return (deterministic)",
        path,
        "Learning curves: mean over seeds, 95% bootstrap CI (solid: ours, dashed: SB3)",
        hl,
    )


def learning_curves(curves: pd.DataFrame, catalog: Any, path: str | Path) -> None:
    if _main_algos(curves).empty:
        return placeholder(path, "Learning curves", "no evaluation data")
    _learning_curves(curves, catalog, path)


@_figure
def _sample_efficiency(m: pd.DataFrame, path: str | Path) -> None:
    m = m.copy()
    m["budget_frac"] = np.where(m["reached"], m["steps_to_threshold"] / m["total_steps"].astype(float), 1.08)
    envs = sorted(m["env"].unique())
    pal = palette(m["algo"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.2 * len(envs) + 6), 4.2))
    sns.barplot(
        m,
        x="env",
        y="auc_norm",
        hue="algo",
        palette=pal,
        errorbar=("ci", 95),
        n_boot=500,
        seed=0,
        ax=axes[0],
        order=envs,
    )
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


def acer_ablation(
    curves: pd.DataFrame, catalog: Any, path: str | Path, reference: Sequence[str] = ("sb3-a2c",)
) -> None:
    c = curves[is_main(curves["setting"])]
    c = c[((c["base_algo"] == "acer") & (c["impl"] == "ours")) | c["algo"].isin(reference)]
    if not (c["base_algo"] == "acer").any():
        return placeholder(path, "ACER ablations", "no ACER runs (acer, acer-no-trunc, acer-no-tr, ...)")
    _acer_ablation(c, catalog, path)


@_figure
def _acer_ablation(c: pd.DataFrame, catalog: Any, path: str | Path) -> None:
    g = on_grid(_with_norm(c, catalog), "norm_return")
    _facet_lines(
        g,
        "norm_return",
        "normalised eval return",
        path,
        "ACER and its ablations (mean over seeds, 95% CI); 1 = threshold, 0 = random",
        {},
    )


def eval_deltas(curves: pd.DataFrame, catalog: Any) -> pd.DataFrame:
    """Change in normalised eval return between consecutive evaluations of each run."""
    c = _with_norm(_main_algos(curves), catalog).sort_values(["algo", "env", "seed", "step"])
    c["delta"] = c.groupby(["algo", "env", "seed"])["norm_return"].diff()
    return c.dropna(subset=["delta"])


def monotonic(
    curves: pd.DataFrame, metrics: pd.DataFrame, catalog: Any, drop: float, path: str | Path
) -> None:
    d = eval_deltas(curves, catalog)
    m = _main_algos(metrics)
    m = m[m["used"] & m["drop_frac"].notna()]
    if d.empty or m.empty:
        return placeholder(path, "Monotonic improvement", "fewer than two evaluations per run")
    _monotonic(d, m, drop, path)


@_figure
def _monotonic(d: pd.DataFrame, m: pd.DataFrame, drop: float, path: str | Path) -> None:
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
    axes[0].set_ylabel("Δ normalised eval return between evaluations")
    axes[0].set_title(f"Change per evaluation interval (red: significant drop, < −{drop})")
    sns.barplot(
        m,
        x="algo",
        y="drop_frac",
        hue="algo",
        palette=pal,
        order=order,
        errorbar=("ci", 95),
        n_boot=500,
        seed=0,
        ax=axes[1],
        legend=False,
    )
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


def sweep_robustness(sm: pd.DataFrame | None, col: str, path: str | Path) -> None:
    if sm is None or sm.empty or not sm["used"].any():
        return placeholder(path, "Hyper-parameter robustness", "no sweep runs (config `sweeps:`)")
    _sweep_robustness(sm[sm["used"]], col, path)


@_figure
def _sweep_robustness(sm: pd.DataFrame, col: str, path: str | Path) -> None:
    algos = sorted(sm["algo"].unique())
    fig, axes = plt.subplots(1, len(algos), figsize=(5.5 * len(algos), 4.4), squeeze=False)
    for ax, algo in zip(axes.flat, algos):
        g = sm[sm["algo"] == algo]
        keys = sorted({k for s in g["setting"] for k in parse_slug(s)})
        if len(keys) == 2:
            piv = g.groupby(keys)[col].mean().unstack(keys[1])
            sns.heatmap(piv, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": f"mean {col}"})
            ax.set_title(f"{algo}: mean {col} over seeds")
        else:
            x = keys[0] if len(keys) == 1 else "setting"
            sns.pointplot(
                g, x=x, y=col, errorbar=("ci", 95), n_boot=500, seed=0, ax=ax, color=palette([algo])[algo]
            )
            sns.stripplot(g, x=x, y=col, color="k", size=3, alpha=0.5, ax=ax)
            ax.set_title(f"{algo}: {col} per setting (mean, 95% CI)")
            ax.tick_params(axis="x", rotation=25)
    fig.suptitle(f"Hyper-parameter robustness on {', '.join(sorted(sm['env'].unique()))} (claim C4)", y=1.02)
    fig.tight_layout()
    _save(fig, path)
