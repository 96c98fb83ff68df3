# The replication DAG: seeds × envs × algorithms → per-run results → tables, figures, report.
#
#   snakemake --cores all                                   # the default matrix
#   snakemake --cores all --configfile experiments/config/smoke.yaml
#   snakemake --report results/report.html                  # the HTML report
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")
sys.path.insert(0, workflow.basedir)

from experiments.matrix import expand as expand_matrix   # noqa: E402

# The default matrix only when no --configfile/--config is given: Snakemake deep-merges a
# `configfile:` with the command line's, which would leak default steps/sweeps into others.
if not config:
    configfile: "experiments/config/default.yaml"
validate(config, "experiments/schema/config.schema.yaml")

RESULTS = config.get("results", "results")
RUNS = {r.out_dir(RESULTS): r for r in expand_matrix(config)}   # validated before any job starts


def run_of(wc):
    return RUNS[f"{RESULTS}/runs/{wc.algo}/{wc.env}/{wc.seed}"]


def run_set_args(wc):
    sets = config.get("set", {}).get(wc.algo, {})
    return " ".join(f"--set {k}={v if not isinstance(v, list) else ','.join(map(str, v))}" for k, v in sets.items())


wildcard_constraints:
    algo=r"[A-Za-z0-9_.\-]+",
    env=r"[A-Za-z0-9_.\-]+",
    seed=r"\d+",

localrules: all

include: "workflow/rules/analysis.smk"


rule all:
    input:
        ANALYSIS_TARGETS,


rule train:
    """One training run: writes the results contract (summary.json last)."""
    output:
        summary=f"{RESULTS}/runs/{{algo}}/{{env}}/{{seed}}/summary.json",
        progress=f"{RESULTS}/runs/{{algo}}/{{env}}/{{seed}}/progress.csv",
        evals=f"{RESULTS}/runs/{{algo}}/{{env}}/{{seed}}/eval.csv",
    params:
        env_id=lambda wc: run_of(wc).env,
        steps=lambda wc: run_of(wc).steps,
        sets=run_set_args,
        outdir=lambda wc, output: str(Path(output.summary).parent),
        eval_episodes=f"--eval-episodes {config['eval_episodes']}" if "eval_episodes" in config else "",
    log:
        f"{RESULTS}/logs/{{algo}}/{{env}}/{{seed}}.log",
    threads: 1
    resources:
        runtime=lambda wc: max(10, run_of(wc).steps // 1000),   # minutes; generous for classic/MuJoCo
        mem_mb=lambda wc: 16000 if run_of(wc).env.startswith("ALE/") else 2000,
    shell:
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 {sys.executable} -m experiments.run --algo {wildcards.algo} "
        "--env {params.env_id} --seed {wildcards.seed} --steps {params.steps} --out {params.outdir} "
        "{params.sets} {params.eval_episodes} --no-progress > {log} 2>&1 "
        # a run that crashed mid-training has written a `failed` summary.json: keep it, so the
        # report lists the failure; a run that wrote none (bad input) fails the job
        "|| test -f {output.summary}"
