"""Aggregate figures with rliable itself (Agarwal et al. 2021; PyPI ``rliable``), on normalised
scores (x − random) / (threshold − random) of ``envs.yaml``:

- performance profiles: for each τ, the fraction of runs (over all envs) whose final normalised
  score exceeds τ (``rly.run_score_deviation``);
- IQM sample-efficiency curves: at each fraction of the budget, the interquartile mean over runs
  and envs of the normalised eval return (``metrics.aggregate_iqm``).

Point estimates come from rliable's functions; every band is the report's one stratified
bootstrap (``analysis.stats.stratified_bootstrap``, strata = envs) with the resamples,
confidence and seed of ``claims.yaml: bootstrap``, as for every other interval of the report.
rliable needs the same envs for every algorithm and the same number of runs per env *within* an
algorithm: an algorithm is shown on the envs every shown algorithm ran (ACER, absent from
InvertedPendulum-v5 in the default matrix, is then left out), with every seed it ran on all of
them (10 for ppo and trpo, 3 for a reference that only describes; n in the legend).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.aggregate import is_main
from analysis.plotting import _figure, _save, _with_norm, on_grid, palette, placeholder
from analysis.stats import BootstrapCfg, _pooled, stat_iqm, stratified_bootstrap

GRID = 20   # points of the sample-efficiency curve, as fractions of each env's budget


def score_matrices(frame: pd.DataFrame, value: str, algos: Sequence[str] | None = None
                   ) -> tuple[dict[str, np.ndarray], list[str]]:
    """{algo: (runs × envs) array of ``value``} over the envs every algorithm has; each algorithm
    keeps every seed it ran on all of those envs (rliable compares algorithms with different
    numbers of runs: a 10-seed algorithm is not cut to a 3-seed reference's seeds). The envs used."""
    d = frame.dropna(subset=[value])
    algos = list(algos or sorted(d["algo"].unique()))
    envs = sorted(set.intersection(*(set(d.loc[d["algo"] == a, "env"]) for a in algos))) if algos else []
    if not envs:
        return {}, []
    out = {}
    for a in algos:
        seeds = sorted(set.intersection(*(set(d.loc[(d["algo"] == a) & (d["env"] == e), "seed"]) for e in envs)))
        if not seeds:      # no seed of a on every common env: nothing rliable can pool
            return {}, []
        g = d[(d["algo"] == a) & d["env"].isin(envs) & d["seed"].isin(seeds)]
        out[a] = g.pivot_table(index="seed", columns="env", values=value, aggfunc="mean")[envs].to_numpy(float)
    return out, envs


def _algos(metrics: pd.DataFrame) -> list[str]:
    """The algorithms (variants left out) that ran on every env of the matrix."""
    m = metrics[is_main(metrics["setting"]) & metrics["used"] & (metrics["variant"] == "full")]
    envs = set(m["env"])
    return sorted(a for a, g in m.groupby("algo") if set(g["env"]) == envs)


def _strata(mat: np.ndarray) -> list[np.ndarray]:
    return [mat[:, j] for j in range(mat.shape[1])]   # runs of each env: the bootstrap's strata


def profiles_and_curves(metrics: pd.DataFrame, curves: pd.DataFrame, catalog: Any, cfg: Mapping[str, Any],
                        path: str | Path) -> None:
    """Performance profiles (left) and IQM sample-efficiency curves (right) in one figure: point
    estimates by rliable's own functions, intervals by the report's one stratified bootstrap."""
    from rliable import library as rly
    from rliable import metrics as rmetrics

    algos = _algos(metrics)
    finals, envs = score_matrices(metrics[metrics["algo"].isin(algos) & is_main(metrics["setting"])
                                          & metrics["used"]], "norm_final", algos)
    if len(algos) < 2 or not envs:
        return placeholder(path, "rliable aggregates", "fewer than two algorithms on common envs")
    b = BootstrapCfg.from_cfg(cfg)

    def boot(mat: np.ndarray, stat: Any) -> tuple[float, float]:
        e = stratified_bootstrap({"x": _strata(mat)}, stat, b.n_boot, b.confidence, b.seed)
        return e.lo, e.hi

    taus = np.linspace(-0.25, 1.25, 61)
    prof = {a: np.array([rly.run_score_deviation(finals[a], t) for t in taus]) for a in algos}
    prof_ci = {a: np.array([boot(finals[a], lambda r, t=t: (_pooled(r["x"]) > t).mean(axis=1)) for t in taus]).T
               for a in algos}
    c = curves[curves["algo"].isin(algos) & is_main(curves["setting"]) & (curves["status"] == "ok")]
    c = _with_norm(c, catalog)
    c = c.assign(frac=c["step"] / c.groupby("env")["step"].transform("max"))
    g = on_grid(c.rename(columns={"step": "_s", "frac": "step"}), "norm_return", GRID)
    fracs = np.linspace(0, 1, GRID + 1)[1:]
    kept, iqm, iqm_ci = [], {a: [] for a in algos}, {a: [] for a in algos}
    for f in fracs:
        mats, _ = score_matrices(g[np.isclose(g["step"], f)], "norm_return", algos)
        if not mats:
            continue
        kept.append(f)
        for a in algos:
            iqm[a].append(float(rmetrics.aggregate_iqm(mats[a])))
            iqm_ci[a].append(boot(mats[a], stat_iqm()))
    _draw(prof, prof_ci, taus, np.array(kept), {a: np.array(v) for a, v in iqm.items()},
          {a: np.array(v).T for a, v in iqm_ci.items()}, algos, envs, {a: len(finals[a]) for a in algos}, path)


@_figure
def _draw(prof: Mapping[str, np.ndarray], prof_ci: Mapping[str, np.ndarray], taus: np.ndarray, fracs: np.ndarray,
          iqm: Mapping[str, np.ndarray], iqm_ci: Mapping[str, np.ndarray], algos: Sequence[str], envs: Sequence[str],
          n_runs: Mapping[str, int], path: str | Path) -> None:
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    pal = palette(algos)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    plot_utils.plot_performance_profiles(prof, taus, performance_profile_cis=prof_ci, colors=pal, ax=axes[0],
                                         xlabel="normalised final score τ", ylabel="fraction of runs with score > τ",
                                         labelsize="medium", ticklabelsize="small")
    axes[0].set_title("Performance profiles (rliable)", fontsize=10)
    if len(fracs):
        plot_utils.plot_sample_efficiency_curve(fracs, iqm, iqm_ci, algorithms=list(algos), colors=pal, ax=axes[1],
                                                xlabel="fraction of the env's budget",
                                                ylabel="IQM of normalised eval return", labelsize="medium",
                                                ticklabelsize="small")
    axes[1].set_title("IQM sample-efficiency curves (rliable)", fontsize=10)
    lines = [plt.Line2D([], [], c=pal[a], lw=2, label=f"{a} (n={n_runs[a]})") for a in algos]
    axes[1].legend(handles=lines, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"Across {len(envs)} envs ({', '.join(envs)}); n runs per env and algorithm; 95% stratified-bootstrap "
                 "bands (claims.yaml bootstrap: resamples and seed)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
