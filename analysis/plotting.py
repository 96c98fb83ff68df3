"""The shared machinery of the report's figures (analysis/figures.py, analysis/figures_claims.py):
one lock around pyplot, the colours (ours and SB3 of the same base share a hue, SB3 lighter),
placeholders for missing data, curves on a common grid and mean ± bootstrap bands.

Snakemake runs ``run:`` blocks of local rules in threads; pyplot is not thread-safe, so every
figure is drawn under one lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
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
            np.random.seed(0)   # seaborn's strip-plot jitter draws from the global generator
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


def on_time_grid(curves: pd.DataFrame, value: str = "eval_return", n: int = 40) -> pd.DataFrame:
    """Every run's curve against its training time ``train_s`` (evaluation time excluded), linearly
    interpolated on one grid per env × algorithm from 0 to the shortest of its runs' training times,
    so that every seed contributes at every point; runs without ``train_s`` are left out."""
    out = []
    c = curves.dropna(subset=["train_s", value])
    for (env, algo), ga in c.groupby(["env", "algo"], sort=True):
        end = ga.groupby("seed")["train_s"].max().min()
        grid = np.linspace(0, end, n + 1)[1:]
        for seed, g in ga.groupby("seed", sort=True):
            g = g.sort_values("train_s")
            t, v = g["train_s"].to_numpy(float), g[value].to_numpy(float)
            pts = grid[grid >= t[0]]
            if len(pts):
                out.append(pd.DataFrame({"env": env, "algo": algo, "seed": seed, "train_s": pts,
                                         value: np.interp(pts, t, v)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _with_norm(curves: pd.DataFrame, catalog: Any) -> pd.DataFrame:
    c = curves.copy()
    thr = c["env"].map(lambda e: catalog.envs[e].threshold if e in catalog.envs else np.nan)
    rnd = c["env"].map(lambda e: catalog.envs[e].random_score if e in catalog.envs else np.nan)
    c["norm_return"] = normalise(c["eval_return"], rnd.to_numpy(float), thr.to_numpy(float))
    return c


def bars_ci(ax: Any, data: pd.DataFrame, x: str, y: str, order: Sequence[str], pal: Mapping[str, Any],
            hue: str | None = None, hue_order: Sequence[str] | None = None) -> None:
    """Bars of the mean of ``y`` per ``x`` (and ``hue``) with the report's one bootstrap CI of the mean
    (``mean_band`` with claims.yaml's resamples, confidence and seed) as error bars, in place of
    seaborn's own bootstrap."""
    from analysis.config import load_config
    from analysis.stats import BootstrapCfg

    b = BootstrapCfg.from_cfg(load_config())
    band = mean_band(data, y, [x] + ([hue] if hue else []), b.n_boot, b.confidence, b.seed)
    levels = list(hue_order) if hue else [None]
    width = 0.8 / len(levels)
    for j, h in enumerate(levels):
        for i, xv in enumerate(order):
            r = band[(band[x] == xv) & ((band[hue] == h) if hue else True)]
            if r.empty:
                continue
            r = r.iloc[0]
            pos = i - 0.4 + width * (j + 0.5)
            ax.bar(pos, r["mean"], width * 0.95, color=pal[h if hue else xv], label=h if hue and i == 0 else None)
            ax.errorbar(pos, r["mean"], yerr=[[r["mean"] - r["lo"]], [r["hi"] - r["mean"]]], color="k", lw=1.2)
    ax.set_xticks(range(len(order)), order)
    if hue:
        ax.legend(fontsize=8, frameon=False)


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
