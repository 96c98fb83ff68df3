# Analysis: every run of the matrix → tidy tables → statistics → figures → claim verdicts →
# HTML tables; everything marked for `snakemake --report results/report.html`.
# Included by the Snakefile, which defines RUNS (out_dir → RunSpec) and RESULTS. Defines
# ANALYSIS_TARGETS for `rule all`. Thresholds of the verdicts: experiments/config/claims.yaml,
# overridden by the config's `claims:` section. Hyper-parameter sweeps (claim C4): the
# config's `sweeps:` section (analysis/sweeps.py documents it).
import sys
from pathlib import Path

from analysis import sweeps as _sweeps
from analysis.config import FIGURES as _FIGURES
from analysis.config import TOY_FIGURES as _TOY_FIGURES
from analysis.config import TOY_FILES as _TOY_FILES
from analysis.config import load_config as _load_claims_config

report: "../report/workflow.rst"

ANALYSIS_CFG = _load_claims_config(config.get("claims"))
_T = f"{RESULTS}/tables"
_F = f"{RESULTS}/figures"
# The toy rules (toys.smk) run when config `toys` is true (the default). They are included
# here unless the Snakefile already did (before this file: it defines TOY_TARGETS).
TOYS_ON = bool(config.get("toys", True)) and Path(workflow.basedir, "workflow/rules/toys.smk").exists()
if TOYS_ON and "TOY_TARGETS" not in globals():

    include: "toys.smk"

TOY_INPUTS = {k: f"{RESULTS}/toys/{v}" for k, v in _TOY_FILES.items()} if TOYS_ON else {}
SWEEPS, _sweep_warnings = _sweeps.expand(config)
for _w in _sweep_warnings:
    print(f"warning: {_w}", file=sys.stderr)
SWEEPS_CSV = f"{_T}/sweeps.csv" if SWEEPS else None
MONO_CSV = None   # MONO (the runs carrying C3's J(π) stream) is the Snakefile's

_CAT_TOP = "0. Verdicts and what ran"
_CAT_CLAIMS = "1. Claims"
_CAT_CURVES = "2. Learning curves"
_CAT_EFF = "3. Sample efficiency"
_CAT_MONO = "4. Monotonic improvement"
_CAT_ACER = "5. ACER ablations"
_CAT_TOYS = "6. Natural-gradient toys"
_CAT_ROBUST = "7. Hyper-parameter robustness"
_CAT_TABLES = "8. Tables and run status"


_STEP = "../../analysis/smk_step.py"   # every analysis rule: analysis.pipeline.run_step(rule, snakemake)
_RUN_LIST = [{"run_dir": d, "algo": r.algo, "env": r.env, "seed": r.seed, "total_steps": r.steps}
             for d, r in RUNS.items()]
_SWEEP_LIST = [{"run_dir": d, "algo": r.algo, "env": r.env, "seed": r.seed, "steps": r.steps,
                "setting": [list(kv) for kv in r.setting]} for d, r in SWEEPS.items()]


# The matrix's run lists as DAG inputs of the tables (experiments/dag_locks.py::sync_manifest):
# a run added to the matrix, or deleted to be retrained, makes Snakemake redraw the tables and so
# train it; committed runs that are present are never retrained.
RUNS_MANIFEST = f"{RESULTS}/runs/MATRIX"
SWEEPS_MANIFEST = f"{RESULTS}/sweeps/MATRIX"
if workflow.is_main_process:
    sync_manifest(RUNS_MANIFEST, [f"{d} {r.steps} {MONO[d].args()}" if d in MONO else f"{d} {r.steps}" for d, r in RUNS.items()],
                  [f"{d}/summary.json" for d in RUNS])
    if SWEEPS:
        sync_manifest(SWEEPS_MANIFEST, [f"{d} {r.steps}" for d, r in SWEEPS.items()],
                      [f"{d}/summary.json" for d in SWEEPS])


_cap = lambda name: f"../report/{name}.rst"   # noqa: E731  (no `def` beside rules: snakemake --lint)


ANALYSIS_TARGETS = (
    [f"{_T}/{n}" for n in ("runs.csv", "curves.parquet", "curves.csv", "updates.parquet", "run_metrics.csv",
                           "stats.csv", "poi.csv", "claims.csv", "claims_parts.csv", "claims.md", "calibration.csv",
                           "claims.html", "verdicts.html", "runs.html", "stats.html", "poi.html", "hyperparams.md",
                           "hyperparams.html", "ledger.csv", "ledger.md", "ledger.html", "pairs.csv", "pairs.md",
                           "pairs.html", "provenance.html")]
    + [f"{_F}/{v}" for v in (*_FIGURES.values(), "aggregate_iqm_poi.png")]
    + ([f"{_F}/{v}" for v in _TOY_FIGURES.values()] if TOYS_ON else [])
    + ([SWEEPS_CSV, f"{_F}/sweep_robustness.png"] if SWEEPS else [])
)
if config.get("monotonic"):

    include: "monotonic.smk"

    ANALYSIS_TARGETS.append(MONO_CSV)


rule dag_time:
    """Where the DAG's core-time went (the last sitting of jobs): inside training runs, start-up, analysis,
    the rest. Runs after every other analysis target."""
    input:
        list(ANALYSIS_TARGETS),
    output:
        csv=f"{_T}/dag_time.csv",
        html=report(f"{_T}/dag_time.html", caption=_cap("dag_time"), category=_CAT_TOP,
                    subcategory="What ran (provenance)"),
    params:
        results=lambda wc, output: str(Path(output.csv).parents[1]),   # {RESULTS}
        # the invocation's --cores, read when the job runs (`snakemake --report` has none to give)
        cores=invocation_cores,
    log:
        f"{RESULTS}/logs/analysis/dag_time.log",
    localrule: True
    script:
        _STEP


ANALYSIS_TARGETS.append(f"{_T}/dag_time.html")


rule analysis_tables:
    """Every run the matrix lists (failed and missing included) → runs / curves / updates tables."""
    input:
        [f"{d}/summary.json" for d in RUNS],
        manifest=RUNS_MANIFEST,
    output:
        runs=report(f"{_T}/runs.csv", caption=_cap("runs"), category=_CAT_TABLES, subcategory="Downloads"),
        curves_parquet=f"{_T}/curves.parquet",
        curves_csv=report(f"{_T}/curves.csv", caption=_cap("curves"), category=_CAT_TABLES,
                          subcategory="Downloads"),
        updates=f"{_T}/updates.parquet",
    params:
        runs=_RUN_LIST,
    log:
        f"{RESULTS}/logs/analysis/analysis_tables.log",
    localrule: True
    script:
        _STEP


rule analysis_stats:
    """Per-run metrics, per env × algorithm statistics, probability of improvement."""
    input:
        runs=f"{_T}/runs.csv",
        curves=f"{_T}/curves.parquet",
    output:
        metrics=f"{_T}/run_metrics.csv",
        stats=report(f"{_T}/stats.csv", caption=_cap("stats"), category=_CAT_TABLES, subcategory="Downloads"),
        poi=report(f"{_T}/poi.csv", caption=_cap("poi"), category=_CAT_TABLES, subcategory="Downloads"),
    params:
        cfg=ANALYSIS_CFG,
    log:
        f"{RESULTS}/logs/analysis/analysis_stats.log",
    localrule: True
    script:
        _STEP


rule analysis_figures:
    """Learning curves, sample efficiency, aggregate IQM / probability of improvement, ACER ablation effects,
    monotonic improvement, KL vs δ."""
    input:
        curves=f"{_T}/curves.parquet",
        updates=f"{_T}/updates.parquet",
        metrics=f"{_T}/run_metrics.csv",
        stats=f"{_T}/stats.csv",
        poi=f"{_T}/poi.csv",
    output:
        aggregate=report(f"{_F}/aggregate_iqm_poi.png", caption=_cap("aggregate"), category=_CAT_EFF),
        learning_curves=report(f"{_F}/{_FIGURES['learning_curves']}", caption=_cap("learning_curves"),
                               category=_CAT_CURVES),
        sample_efficiency=report(f"{_F}/{_FIGURES['sample_efficiency']}", caption=_cap("sample_efficiency"),
                                 category=_CAT_EFF),
        acer_ablation=report(f"{_F}/{_FIGURES['acer_ablation']}", caption=_cap("acer_ablation"),
                             category=_CAT_ACER),
        monotonic=report(f"{_F}/{_FIGURES['monotonic']}", caption=_cap("monotonic"), category=_CAT_MONO),
        kl=report(f"{_F}/{_FIGURES['kl']}", caption=_cap("kl_vs_delta"), category=_CAT_MONO),
        profiles=report(f"{_F}/{_FIGURES['profiles']}", caption=_cap("rliable"), category=_CAT_EFF),
        wallclock=report(f"{_F}/{_FIGURES['wallclock']}", caption=_cap("learning_curves_wallclock"),
                         category=_CAT_EFF),
    params:
        cfg=ANALYSIS_CFG,
    log:
        f"{RESULTS}/logs/analysis/analysis_figures.log",
    localrule: True
    script:
        _STEP


if TOYS_ON:

    rule analysis_toy_figures:
        """NGD vs GD on the Gaussian manifold; NPG vs PG on the chain MDP; compatible features (C7); CG and K-FAC (C8)."""
        input:
            **TOY_INPUTS,
        output:
            gaussian=report(f"{_F}/{_TOY_FIGURES['gaussian']}", caption=_cap("toy_gaussian"), category=_CAT_TOYS),
            npg=report(f"{_F}/{_TOY_FIGURES['npg']}", caption=_cap("toy_npg"), category=_CAT_TOYS),
            compatible=report(f"{_F}/{_TOY_FIGURES['compatible']}", caption=_cap("toy_compatible"),
                              category=_CAT_TOYS),
            ng_approx=report(f"{_F}/{_TOY_FIGURES['ng_approx']}", caption=_cap("toy_ng_approx"),
                             category=_CAT_TOYS),
        log:
            f"{RESULTS}/logs/analysis/analysis_toy_figures.log",
        localrule: True
        script:
            _STEP


if SWEEPS:

    _sweep_of = lambda wc: SWEEPS[f"{RESULTS}/sweeps/{wc.algo}/{wc.env}/{wc.setting}/{wc.seed}"]  # noqa: E731
    _sweep_resources = lambda wc: job_resources(*(lambda r: (r.algo, r.env, r.steps))(_sweep_of(wc)))  # noqa: E731

    rule sweep_run:
        """One run of a hyper-parameter sweep; a crash still leaves a `failed` summary.json."""
        output:
            summary=f"{RESULTS}/sweeps/{{algo}}/{{env}}/{{setting}}/{{seed}}/summary.json",
        params:
            env_id=lambda wc: _sweep_of(wc).env,
            steps=lambda wc: _sweep_of(wc).steps,
            sets=lambda wc: _sweep_of(wc).set_args(config.get("set", {}).get(wc.algo, {})),
            outdir=lambda wc, output: str(Path(output.summary).parent),
            device=device_of,
            python=PYTHON,
        log:
            f"{RESULTS}/logs/sweeps/{{algo}}/{{env}}/{{setting}}/{{seed}}.log",
        wildcard_constraints:
            setting=r"[A-Za-z0-9_.=\-]+",
        threads: 1
        resources:
            runtime=lambda wc, attempt: min(_sweep_resources(wc)["runtime"] * attempt,
                                            _sweep_resources(wc)["max_runtime"]),
            mem_mb=lambda wc: _sweep_resources(wc)["mem_mb"],
            gpu=lambda wc: _sweep_resources(wc)["gpu"],
            gpu_model=lambda wc: _sweep_resources(wc)["gpu_model"],
            slurm_extra=lambda wc: _sweep_resources(wc)["slurm_extra"],
        shell:
            "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 {params.python} -m experiments.run --algo {wildcards.algo} "
            "--env {params.env_id} --seed {wildcards.seed} --steps {params.steps} --out {params.outdir} "
            "--device {params.device} {params.sets} --no-progress > {log} 2>&1 || true; "
            "{params.python} -m analysis.sweeps ensure-summary {params.outdir} {log} --algo {wildcards.algo} "
            "--env {params.env_id} --seed {wildcards.seed} --steps {params.steps} >> {log}"

    rule analysis_sweeps:
        """Every sweep run (failed and missing included) with its metrics and hyper-parameters."""
        input:
            [f"{d}/summary.json" for d in SWEEPS],
            manifest=SWEEPS_MANIFEST,
        output:
            csv=report(SWEEPS_CSV, caption=_cap("sweeps"), category=_CAT_ROBUST),
        params:
            cfg=ANALYSIS_CFG,
            sweeps=_SWEEP_LIST,
        log:
            f"{RESULTS}/logs/analysis/analysis_sweeps.log",
        localrule: True
        script:
            _STEP

    rule analysis_sweep_figure:
        """PPO clip range × learning rate, TRPO target KL: score per setting."""
        input:
            csv=SWEEPS_CSV,
        output:
            png=report(f"{_F}/sweep_robustness.png", caption=_cap("sweep_robustness"), category=_CAT_ROBUST),
        params:
            cfg=ANALYSIS_CFG,
        log:
            f"{RESULTS}/logs/analysis/analysis_sweep_figure.log",
        localrule: True
        script:
            _STEP


_CAL_SCORES = str(Path(workflow.basedir, ANALYSIS_CFG.get("calibration", {}).get(
    "scores", "results/snapshot/default/tables/run_metrics.csv")))


rule calibration:
    """A/A false-verdict rate and minimum detectable effect of every claim's test at this matrix's design
    (analysis/calibrate.py; simulated scores resampled from the committed snapshot's per-run metrics;
    the one-sample parts by the double bootstrap of this matrix's sweep and toy, analysis/double_bootstrap.py)."""
    input:
        # the committed snapshot's per-run metrics; without them (a bare copy), this matrix's own
        scores=_CAL_SCORES if Path(_CAL_SCORES).exists() else f"{_T}/run_metrics.csv",
        thresholds=str(Path(workflow.basedir, "experiments/config/claims.yaml")),
        **({"monotonic": MONO_CSV} if MONO_CSV else {}),
        # the one-sample parts (C4's robustness, C7's sampled rate): double bootstrap of their own data
        **({"sweeps": SWEEPS_CSV} if SWEEPS else {}),
        **({"compatible": TOY_INPUTS["compatible"]} if TOYS_ON else {}),
    output:
        csv=report(f"{_T}/calibration.csv", caption=_cap("claims"), category=_CAT_CLAIMS, subcategory="Downloads"),
    params:
        cfg=ANALYSIS_CFG,
        matrix={k: config[k] for k in ("profile", "seeds", "more_seeds", "algorithms", "suites", "envs", "steps", "set",
                                       "asymmetric_ok", "exclude", "monotonic") if k in config},
    log:
        f"{RESULTS}/logs/analysis/calibration.log",
    # it runs after the last run, with nothing beside it: two processes share its simulations (the same
    # table for any number, analysis/calibrate.py)
    threads: 2
    localrule: True
    script:
        _STEP


rule analysis_claims:
    """C1–C6 verdicts from the data (thresholds: claims.yaml / config `claims:`)."""
    input:
        metrics=f"{_T}/run_metrics.csv",
        calibration=f"{_T}/calibration.csv",
        updates=f"{_T}/updates.parquet",
        **({"monotonic": MONO_CSV} if MONO_CSV else {}),
        **{f"toy_{k}": v for k, v in TOY_INPUTS.items()},
        **({"sweeps": SWEEPS_CSV} if SWEEPS else {}),
    output:
        csv=report(f"{_T}/claims.csv", caption=_cap("claims"), category=_CAT_CLAIMS, subcategory="Downloads"),
        parts=f"{_T}/claims_parts.csv",
        md=report(f"{_T}/claims.md", caption=_cap("claims"), category=_CAT_CLAIMS, subcategory="Downloads"),
    params:
        cfg=ANALYSIS_CFG,
    log:
        f"{RESULTS}/logs/analysis/analysis_claims.log",
    localrule: True
    script:
        _STEP


rule analysis_html:
    """The tables as HTML pages, shown inline by the report; verdicts.html is the landing page's verdict
    table (workflow/report/workflow.rst embeds it)."""
    input:
        runs=f"{_T}/runs.csv",
        stats=f"{_T}/stats.csv",
        poi=f"{_T}/poi.csv",
        claims=f"{_T}/claims.csv",
        parts=f"{_T}/claims_parts.csv",
        metrics=f"{_T}/run_metrics.csv",
        calibration=f"{_T}/calibration.csv",
        **({"sweeps": SWEEPS_CSV} if SWEEPS else {}),
    output:
        verdicts=report(f"{_T}/verdicts.html", caption=_cap("verdicts"), category=_CAT_TOP, subcategory="Verdicts"),
        claims=report(f"{_T}/claims.html", caption=_cap("claims"), category=_CAT_CLAIMS, subcategory="Verdicts"),
        runs=report(f"{_T}/runs.html", caption=_cap("runs"), category=_CAT_TABLES, subcategory="Tables"),
        stats=report(f"{_T}/stats.html", caption=_cap("stats"), category=_CAT_TABLES, subcategory="Tables"),
        poi=report(f"{_T}/poi.html", caption=_cap("poi"), category=_CAT_TABLES, subcategory="Tables"),
        provenance=report(f"{_T}/provenance.html", caption=_cap("provenance"), category=_CAT_TOP,
                          subcategory="What ran (provenance)"),
    log:
        f"{RESULTS}/logs/analysis/analysis_html.log",
    localrule: True
    script:
        _STEP


rule analysis_ledger:
    """Ours vs published (analysis/data/published.csv): the same statistic from our runs, with a t-interval."""
    input:
        curves=f"{_T}/curves.parquet",
        updates=f"{_T}/updates.parquet",
        runs=f"{_T}/runs.csv",
        published=str(Path(workflow.basedir, "analysis/data/published.csv")),
    output:
        csv=report(f"{_T}/ledger.csv", caption=_cap("ledger"), category=_CAT_TABLES, subcategory="Downloads"),
        md=f"{_T}/ledger.md",
        html=report(f"{_T}/ledger.html", caption=_cap("ledger"), category=_CAT_TOP, subcategory="Ours vs published"),
    log:
        f"{RESULTS}/logs/analysis/analysis_ledger.log",
    localrule: True
    script:
        _STEP


rule analysis_pairs:
    """Ours against its reference (each parity.yaml pair) per env, paired by seed: the difference of
    final and max returns with the paired-t interval and p; a check of the implementations, not a claim."""
    input:
        curves=f"{_T}/curves.parquet",
        parity=str(Path(workflow.basedir, "experiments/config/parity.yaml")),
    output:
        csv=report(f"{_T}/pairs.csv", caption=_cap("pairs"), category=_CAT_TABLES, subcategory="Downloads"),
        md=f"{_T}/pairs.md",
        html=report(f"{_T}/pairs.html", caption=_cap("pairs"), category=_CAT_TOP, subcategory="Ours vs the references"),
    log:
        f"{RESULTS}/logs/analysis/analysis_pairs.log",
    localrule: True
    script:
        _STEP


rule hyperparams_table:
    """The resolved hyper-parameters of every algorithm × env of the matrix, with the source of each
    value (default / envs.yaml family / hyperparams.yaml / variant / set) and the parity exceptions."""
    input:
        hyperparams=str(Path(workflow.basedir, "experiments/config/hyperparams.yaml")),
        parity=str(Path(workflow.basedir, "experiments/config/parity.yaml")),
        envs=str(Path(workflow.basedir, "envs.yaml")),
    output:
        md=report(f"{_T}/hyperparams.md", caption=_cap("hyperparams"), category=_CAT_TABLES,
                  subcategory="Downloads"),
        html=report(f"{_T}/hyperparams.html", caption=_cap("hyperparams"), category=_CAT_TOP,
                    subcategory="What ran (hyper-parameters)"),
    params:
        matrix={k: config[k] for k in ("profile", "seeds", "algorithms", "suites", "envs", "steps", "set", "exclude")
                if k in config},
    log:
        f"{RESULTS}/logs/analysis/hyperparams_table.log",
    localrule: True
    script:
        _STEP
