"""The analysis steps, one function per Snakemake rule (workflow/rules/analysis.smk), also
runnable without Snakemake on a partial results tree::

    python -m analysis.pipeline --config experiments/config/default.yaml [--results results]

(missing runs are then listed as ``missing`` instead of blocking the analysis).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import aggregate, claims, html, stats, sweeps
from analysis.config import FIGURES, HTML_TABLES, TOY_FIGURES, TOY_FILES
from experiments.envs import load_catalog


def _read(p: str | Path | None) -> pd.DataFrame | None:
    if p is None or not Path(p).exists() or Path(p).stat().st_size == 0:
        return None
    return pd.read_parquet(p) if str(p).endswith(".parquet") else pd.read_csv(p)


def _runs(p: str | Path) -> pd.DataFrame:
    df = pd.read_csv(p, keep_default_na=False, na_values=[""])
    df["setting"] = aggregate.clean_setting(df["setting"]) if "setting" in df else ""
    return df


def make_tables(
    refs: list[aggregate.RunRef], runs_csv: str, curves_parquet: str, curves_csv: str, updates_parquet: str
) -> aggregate.Tables:
    t = aggregate.collect(refs)
    aggregate.write_tables(t, runs_csv, curves_parquet, curves_csv, updates_parquet)
    return t


def make_stats(
    runs_csv: str, curves_parquet: str, cfg: Mapping[str, Any], metrics_csv: str, stats_csv: str, poi_csv: str
) -> None:
    runs, curves = _runs(runs_csv), pd.read_parquet(curves_parquet)
    curves["setting"] = aggregate.clean_setting(curves["setting"])
    m = stats.run_metrics(runs, curves, load_catalog(), cfg)
    m.to_csv(metrics_csv, index=False)
    stats.stats_table(m, cfg).to_csv(stats_csv, index=False)
    stats.poi_table(m, cfg).to_csv(poi_csv, index=False)


def make_monotonic(run_list: list[Mapping[str, Any]], cfg: Mapping[str, Any], out_csv: str,
                   out_png: str | None = None) -> pd.DataFrame:
    """Claim C3's per-run metrics (experiments/monotonic.py): ``stats.run_metrics`` of the C3 runs on
    their estimates of J(π) (``j_eval.csv``) from one block of env steps on (the first, after the first update, spans
    less), so that ``drop_frac`` is the fraction of blocks after which J(π) dropped beyond tolerance."""
    refs = [aggregate.RunRef(r["run_dir"], r["algo"], r["env"], int(r["seed"]), int(r["total_steps"]))
            for r in run_list]
    block = {(r["algo"], r["env"], int(r["seed"])): int(r["block"]) for r in run_list}
    t = aggregate.collect(refs, eval_file="j_eval.csv")
    c = t.curves
    if len(c):
        keep = [s >= block.get((a, e, int(sd)), 0) for a, e, sd, s in zip(c["algo"], c["env"], c["seed"], c["step"])]
        c = c[keep]
    catalog = load_catalog()
    m = stats.run_metrics(t.runs, c, catalog, cfg)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    m.to_csv(out_csv, index=False)
    if out_png:
        from analysis import figures  # matplotlib / seaborn only where needed

        m["setting"] = aggregate.clean_setting(m["setting"]) if "setting" in m else ""
        curves = c.assign(setting=aggregate.clean_setting(c["setting"])) if len(c) else c
        figures.monotonic(curves, m, catalog, float(cfg.get("C3", {}).get("drop_fraction", 0.1)), out_png,
                          what="J(π) of the sampled policy, per block of env steps")
    return m


def _metrics(p: str) -> pd.DataFrame:
    m = pd.read_csv(p, keep_default_na=False, na_values=[""])
    m["setting"] = aggregate.clean_setting(m["setting"])
    m["used"] = m["used"].astype(str).str.lower() == "true"
    m["reached"] = m["reached"].astype(str).str.lower() == "true"
    return m


def make_figures(
    curves_parquet: str,
    updates_parquet: str,
    metrics_csv: str,
    cfg: Mapping[str, Any],
    out: Mapping[str, str],
    stats_csv: str | None = None,
    poi_csv: str | None = None,
) -> None:
    from analysis import figures, figures_claims  # matplotlib / seaborn only where needed

    catalog = load_catalog()
    curves = pd.read_parquet(curves_parquet)
    curves["setting"] = aggregate.clean_setting(curves["setting"])
    updates = pd.read_parquet(updates_parquet)
    m = _metrics(metrics_csv)
    drop = float(cfg.get("C3", {}).get("drop_fraction", 0.1))
    figures.learning_curves(curves, catalog, out["learning_curves"], cfg)
    if out.get("wallclock"):
        figures_claims.learning_curves_wallclock(curves, catalog, out["wallclock"], cfg)
    figures.sample_efficiency(m, out["sample_efficiency"])
    figures.acer_ablation(curves, catalog, out["acer_ablation"], metrics=m, updates=updates, cfg=cfg)
    figures.monotonic(curves, m, catalog, drop, out["monotonic"])
    figures.kl_vs_delta(updates, out["kl"])
    if out.get("aggregate"):
        figures_claims.aggregate(_read(stats_csv), _read(poi_csv), cfg, out["aggregate"])
    if out.get("profiles"):
        from analysis import figures_rliable

        figures_rliable.profiles_and_curves(m, curves, catalog, cfg, out["profiles"])


def make_toy_figures(toys: Mapping[str, str], out: Mapping[str, str]) -> None:
    from analysis import figures  # matplotlib / seaborn only where needed

    figures.toy_gaussian(_read(toys.get("gaussian_trajectories")), out["gaussian"])
    figures.toy_npg(_read(toys.get("npg_curve")), _read(toys.get("npg_summary")), out["npg"])
    if out.get("compatible"):
        figures.toy_compatible(_read(toys.get("compatible")), out["compatible"])
    if out.get("ng_approx"):
        figures.toy_ng_approx(_read(toys.get("ng_approx")), out["ng_approx"])


def make_sweep_table(
    runs: Mapping[str, sweeps.SweepRun], cfg: Mapping[str, Any], out_csv: str
) -> pd.DataFrame:
    m = sweeps.sweep_metrics(runs, load_catalog(), cfg)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    m.to_csv(out_csv, index=False)
    return m


def make_sweep_figure(sweeps_csv: str, cfg: Mapping[str, Any], out_png: str) -> None:
    from analysis import figures  # matplotlib / seaborn only where needed

    sm = _metrics(sweeps_csv) if Path(sweeps_csv).exists() else None
    figures.sweep_robustness(sm, cfg.get("C4", {}).get("robust_metric", "norm_final"), out_png, cfg)


def make_claims(
    metrics_csv: str,
    updates_parquet: str,
    cfg: Mapping[str, Any],
    out_csv: str,
    out_parts: str,
    out_md: str,
    toys: Mapping[str, str] | None = None,
    sweeps_csv: str | None = None,
    calibration_csv: str | None = None,
    monotonic_csv: str | None = None,
) -> pd.DataFrame:
    toys = toys or {}
    m = _metrics(metrics_csv)
    mono = _metrics(monotonic_csv) if monotonic_csv and Path(monotonic_csv).exists() else None
    u = pd.read_parquet(updates_parquet)
    sm = _metrics(sweeps_csv) if sweeps_csv and Path(sweeps_csv).exists() else None
    cal = _read(calibration_csv)
    cl = claims.evaluate(m, u, cfg, _read(toys.get("gaussian_summary")), _read(toys.get("npg_summary")), sm, cal,
                         mono, _read(toys.get("compatible")), _read(toys.get("ng_approx")))
    table = claims.claims_table(cl)
    prov = claims.provenance(_read(Path(metrics_csv).with_name("runs.csv")))
    table = table.assign(**prov)
    table.to_csv(out_csv, index=False)
    claims.parts_table(cl).to_csv(out_parts, index=False)
    Path(out_md).write_text(
        "# Claim verdicts\n\nComputed by analysis/claims.py from the results; thresholds in "
        f"experiments/config/claims.yaml (last changed in {prov['thresholds_commit'] or '?'}, "
        f"{prov['thresholds_date'] or '?'}); runs from commit {prov['runs_commit'] or '?'} "
        f"({prov['runs_date'] or '?'}).\n\n"
        + (f"**Warning: {prov['provenance_warning']}.**\n\n" if prov["provenance_warning"] else "")
        + "false_verdict_rate: share of simulated A/A designs of this design that end supported or not "
        "supported (analysis/calibrate.py); mde: the smallest effect detected with 80 % power.\n\n"
        + claims.to_markdown(
            table,
            ["claim", "verdict", "effect", "ci_low", "ci_high", "metric", "false_verdict_rate", "mde", "runs_used",
             "reason"],
        )
        + "\n## Parts\n\n"
        + claims.to_markdown(claims.parts_table(cl)),
        encoding="utf-8",
    )
    return table


STATS_INTRO = (
    "Final eval return (mean, IQM with 95% stratified-bootstrap CI), normalised score "
    "(x − random) / (threshold − random), normalised area under the eval curve (AUC), median steps "
    "to the env threshold (NaN when fewer than half the runs reach it) and the fraction of runs that "
    "reach it. Rows env = ALL pool the algorithm's envs (bootstrap stratified by env). n_failed / "
    "n_missing count runs that diverged or never finished."
)
POI_INTRO = (
    "P(algo_x > algo_y): the probability that a run of x scores higher than a run of y (ties ½), "
    "averaged over envs, with a 95% stratified-bootstrap CI; metric auc_norm (sample efficiency) or "
    "norm_final."
)
CLAIMS_INTRO = (
    "One row per claim of the seed text, computed from the data with the thresholds of "
    "experiments/config/claims.yaml: supported when the CI lies beyond the support threshold, not "
    "supported when it lies below the refutation threshold, inconclusive otherwise or when inputs "
    "are missing."
)
VERDICTS_NOTE = (
    "<p class='small'>Verdict of a part: <i>supported</i> when its 95% interval lies beyond the support "
    "threshold, <i>not supported</i> when it lies below the refutation threshold, <i>inconclusive</i> "
    "otherwise; a claim is supported when every part is, not supported when any part is. "
    "<i>per env</i>: point estimates of the part's statistic in each env (the test pools the envs). "
    "<i>A/A false-verdict rate</i>: the share of simulated designs with no true difference that still "
    "end supported or not supported; <i>MDE</i>: the smallest true effect the test detects with 80% "
    "power at this design (∞: none can), in the unit of the effect (analysis/calibrate.py).</p>"
)
RUN_COLUMNS = [
    "algo",
    "env",
    "seed",
    "status",
    "error",
    "final_eval_return",
    "steps_done",
    "total_steps",
    "steps_per_second",
    "wall_s",
    "git_commit",
]
CLAIM_COLUMNS = [
    "claim",
    "statement",
    "verdict",
    "effect",
    "ci_low",
    "ci_high",
    "false_verdict_rate",
    "mde",
    "metric",
    "test",
    "runs_used",
    "reason",
    "provenance_warning",
]


def write_provenance(runs: pd.DataFrame, path: str) -> None:
    """What ran where: runs per commit (with their total training time), per package versions,
    per machine, and the wall time per run by algorithm × env — all from the runs' summary.json."""
    r = runs.copy()
    for col in ("git_commit", "versions", "machine", "finished_at"):
        if col not in r:
            r[col] = None
        r[col] = r[col].fillna("not recorded").astype(str).replace({"": "not recorded", "nan": "not recorded"})
    r["wall_s"] = pd.to_numeric(r.get("wall_s"), errors="coerce")
    ok = r[r["status"] != "missing"]

    def by(col: str) -> pd.DataFrame:
        g = ok.groupby(col, dropna=False)
        return pd.DataFrame({col: list(g.groups), "runs": g.size().to_numpy(),
                             "core_hours": (g["wall_s"].sum() / 3600).round(3).to_numpy(),
                             "first_finished": g["finished_at"].min().to_numpy(),
                             "last_finished": g["finished_at"].max().to_numpy()})

    wall = (ok.groupby(["algo", "env"])["wall_s"].agg(["count", "median", "max", "sum"]).round(1)
            .rename(columns={"count": "runs", "median": "median_wall_s", "max": "max_wall_s", "sum": "total_wall_s"})
            .reset_index())
    total = float(ok["wall_s"].sum())
    html.write_page(path, "Provenance: what ran, where, with what", [
        (f"{len(ok)} runs finished ({len(r) - len(ok)} missing), {total / 3600:.2f} core-hours of training and "
         "evaluation in all (sum of the runs' wall_s). Every number below is read from the runs' summary.json; "
         "'not recorded' marks runs made before a field existed.", ""),
        ("Runs per commit (a '-dirty' suffix: uncommitted changes in the working tree):",
         html.table_html(by("git_commit"))),
        ("Runs per package versions:", html.table_html(by("versions"))),
        ("Runs per machine:", html.table_html(by("machine"))),
        ("Wall time per run, by algorithm and env (seconds, training and its evaluations):", html.table_html(wall)),
    ])


def make_html(
    runs_csv: str,
    stats_csv: str,
    poi_csv: str,
    claims_csv: str,
    parts_csv: str,
    out: Mapping[str, str],
    sweeps_csv: str | None = None,
    metrics_csv: str | None = None,
    calibration_csv: str | None = None,
) -> None:
    """The HTML tables; with ``out["verdicts"]``, also the landing page's verdict table (a fragment
    that workflow/report/workflow.rst embeds)."""
    runs = _runs(runs_csv)
    n = aggregate.count_status(runs["status"])
    intro = (
        f"{len(runs)} planned runs: {n['n_ok']} ok, {n['n_failed']} failed, {n['n_missing']} missing. "
        "Failed and missing runs are listed first; they are counted in every table (n_failed, "
        "n_missing) and never dropped silently."
    )
    ordered = pd.concat([runs[runs["status"] != "ok"], runs[runs["status"] == "ok"]])
    sections = [
        (intro, html.table_html(aggregate.status_counts(runs))),
        ("Every run:", html.table_html(ordered, RUN_COLUMNS)),
    ]
    if sweeps_csv and Path(sweeps_csv).exists():
        sw = _metrics(sweeps_csv)
        k = aggregate.count_status(sw["status"])
        sections.append(
            (
                f"Sweep runs: {len(sw)} planned, {k['n_ok']} ok, {k['n_failed']} failed, "
                f"{k['n_missing']} missing.",
                html.table_html(
                    sw,
                    ["algo", "env", "setting", "seed", "status", "final_return", "norm_final", "auc_norm", "note"],
                ),
            )
        )
    html.write_page(out["runs"], "Run status", sections)
    if out.get("provenance"):
        write_provenance(runs, out["provenance"])
    html.write_page(
        out["stats"],
        "Statistics per env and algorithm",
        [(STATS_INTRO, html.table_html(pd.read_csv(stats_csv)))],
    )
    html.write_page(
        out["poi"], "Probability of improvement", [(POI_INTRO, html.table_html(pd.read_csv(poi_csv)))]
    )
    html.write_page(
        out["claims"],
        "Claim verdicts",
        [
            (CLAIMS_INTRO, html.table_html(pd.read_csv(claims_csv), CLAIM_COLUMNS)),
            ("Every part of every claim:", html.table_html(pd.read_csv(parts_csv))),
        ],
    )
    if out.get("verdicts"):
        metrics = _metrics(metrics_csv) if metrics_csv and Path(metrics_csv).exists() else None
        Path(out["verdicts"]).write_text(
            html.verdict_landing(pd.read_csv(claims_csv), pd.read_csv(parts_csv), metrics, _read(calibration_csv))
            + VERDICTS_NOTE,
            encoding="utf-8",
        )


def run_step(rule: str, smk: Any) -> None:
    """One analysis rule, given Snakemake's ``snakemake`` object (see analysis/smk_step.py)."""
    i, o, p = smk.input, smk.output, smk.params
    if rule == "analysis_tables":
        make_tables(
            [aggregate.RunRef(**r) for r in p.runs], o.runs, o.curves_parquet, o.curves_csv, o.updates
        )
    elif rule == "analysis_stats":
        make_stats(i.runs, i.curves, p.cfg, o.metrics, o.stats, o.poi)
    elif rule == "analysis_figures":
        make_figures(i.curves, i.updates, i.metrics, p.cfg, dict(o.items()), i.get("stats"), i.get("poi"))
    elif rule == "analysis_toy_figures":
        make_toy_figures(dict(i.items()), dict(o.items()))
    elif rule == "analysis_sweeps":
        runs = {
            r["run_dir"]: sweeps.SweepRun(
                r["algo"], r["env"], r["seed"], r["steps"], tuple((k, v) for k, v in r["setting"])
            )
            for r in p.sweeps
        }
        make_sweep_table(runs, p.cfg, o.csv)
    elif rule == "analysis_sweep_figure":
        make_sweep_figure(i.csv, p.cfg, o.png)
    elif rule == "analysis_claims":
        toys = {k[4:]: v for k, v in i.items() if k.startswith("toy_")}
        make_claims(i.metrics, i.updates, p.cfg, o.csv, o.parts, o.md, toys, i.get("sweeps"), i.get("calibration"),
                    i.get("monotonic"))
    elif rule == "analysis_monotonic":
        make_monotonic(p.runs, p.cfg, o.csv, o.get("png"))
    elif rule == "calibration":
        from analysis import calibrate

        mono = pd.read_csv(i.monotonic) if i.get("monotonic") else None
        sweep_metrics = _metrics(i.sweeps) if i.get("sweeps") else None    # read as analysis_claims reads it
        calibrate.calibrate(p.matrix, p.cfg, pd.read_csv(i.scores), monotonic=mono, sweeps=sweep_metrics,
                            compatible=_read(i.get("compatible")), workers=int(smk.threads)).to_csv(o.csv, index=False)
    elif rule == "dag_time":
        from analysis import dag_time

        dag_time.write(p.results, int(p.cores) or 1, o.csv, o.html)
    elif rule == "analysis_html":
        make_html(i.runs, i.stats, i.poi, i.claims, i.parts, dict(o.items()), i.get("sweeps"), i.get("metrics"),
                  i.get("calibration"))
    elif rule == "analysis_pairs":
        from analysis.pairs import make_pairs
        make_pairs(i.curves, o.csv, o.md, o.html)
    elif rule == "analysis_ledger":
        from analysis.ledger import make_ledger

        make_ledger(i.curves, i.updates, i.runs, o.csv, o.md, o.html, i.published)
    elif rule == "hyperparams_table":
        from experiments.hparams_table import write_tables

        tables = write_tables(p.matrix, o.md, o.html)
        Path(smk.log[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(smk.log[0]).write_text(f"{len(tables)} envs: {', '.join(t.env for t in tables)}\n")
    else:
        raise ValueError(f"unknown analysis rule {rule!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m analysis.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="experiment config (experiments/config/*.yaml)")
    p.add_argument("--results", default=None, help="results directory (default: the config's, or results)")
    a = p.parse_args(argv)
    from experiments.matrix import expand, load_config

    config = load_config(a.config)
    if a.results:
        config["results"] = a.results
    res = config.get("results", "results")
    cfg = claims.load_config(config.get("claims"))
    refs = [aggregate.RunRef.from_spec(r.out_dir(res), r) for r in expand(config, check_deps=False)]
    T, F = f"{res}/tables", f"{res}/figures"
    make_tables(refs, f"{T}/runs.csv", f"{T}/curves.parquet", f"{T}/curves.csv", f"{T}/updates.parquet")
    make_stats(
        f"{T}/runs.csv", f"{T}/curves.parquet", cfg, f"{T}/run_metrics.csv", f"{T}/stats.csv", f"{T}/poi.csv"
    )
    make_figures(
        f"{T}/curves.parquet",
        f"{T}/updates.parquet",
        f"{T}/run_metrics.csv",
        cfg,
        {k: f"{F}/{v}" for k, v in FIGURES.items()} | {"aggregate": f"{F}/aggregate_iqm_poi.png"},
        f"{T}/stats.csv",
        f"{T}/poi.csv",
    )
    toys = {k: f"{res}/toys/{v}" for k, v in TOY_FILES.items()}
    make_toy_figures(toys, {k: f"{F}/{v}" for k, v in TOY_FIGURES.items()})
    sw_runs, warns = sweeps.expand(config)
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)
    sweeps_csv = None
    if sw_runs:
        sweeps_csv = f"{T}/sweeps.csv"
        make_sweep_table(sw_runs, cfg, sweeps_csv)
        make_sweep_figure(sweeps_csv, cfg, f"{F}/sweep_robustness.png")
    from analysis import calibrate

    calibrate.run(a.config, f"{T}/calibration.csv", cfg)
    table = make_claims(
        f"{T}/run_metrics.csv",
        f"{T}/updates.parquet",
        cfg,
        f"{T}/claims.csv",
        f"{T}/claims_parts.csv",
        f"{T}/claims.md",
        toys,
        sweeps_csv,
        f"{T}/calibration.csv",
    )
    make_html(
        f"{T}/runs.csv",
        f"{T}/stats.csv",
        f"{T}/poi.csv",
        f"{T}/claims.csv",
        f"{T}/claims_parts.csv",
        {k: f"{T}/{k}.html" for k in (*HTML_TABLES, "verdicts")},
        sweeps_csv,
        f"{T}/run_metrics.csv",
        f"{T}/calibration.csv",
    )
    from experiments.hparams_table import write_tables

    write_tables(config, f"{T}/hyperparams.md", f"{T}/hyperparams.html")
    print(table[["claim", "verdict", "effect", "ci_low", "ci_high", "reason"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
