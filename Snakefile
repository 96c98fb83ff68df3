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

from experiments.dag_locks import claim_workdir, sync_manifest   # noqa: E402
import experiments.smk_timers   # noqa: E402,F401  (one scheduler re-evaluation timer, not one per round)
from experiments.envs import load_catalog   # noqa: E402
from experiments.matrix import expand as expand_matrix   # noqa: E402

# The default matrix only when no --configfile/--config is given: Snakemake deep-merges a
# `configfile:` with the command line's, which would leak default steps/sweeps into others.
if "profile" not in config:
    configfile: "experiments/config/default.yaml"
validate(config, "experiments/schema/config.schema.yaml")

RESULTS = config.get("results", "results")
RUNS = {r.out_dir(RESULTS): r for r in expand_matrix(config)}   # validated before any job starts
# Runs that also estimate claim C3's J(π) every block (experiments/monotonic.py): run dir → that run
from experiments import monotonic as _monotonic   # noqa: E402

MONO = _monotonic.expand(config)
assert set(MONO) <= set(RUNS), "experiments.matrix.expand adds every monotonic: run to the matrix"

# Finished runs (committed snapshots included) must have been made with the settings the matrix
# resolves to now; otherwise stop and say which, rather than count them as done.
if workflow.is_main_process:
    from experiments.matrix import stale_runs   # noqa: E402

    _stale = stale_runs(RUNS, config, j_eval={d: r.identity() for d, r in MONO.items()})
    if _stale:
        raise ValueError("finished runs were made with other settings than the matrix resolves now (first "
                         f"{len(_stale)}):\n  " + "\n  ".join(_stale) + "\nRestore those settings, or delete "
                         "the listed run directories so that they are retrained with the new ones.")

# A hard-killed snakemake (kill -9, reboot) leaves its locks behind; remove them when every
# snakemake that held them is gone (experiments/dag_locks.py), so the same command resumes.
if workflow.is_main_process:
    for _lock in claim_workdir(Path.cwd()):
        print(f"removed stale lock {_lock} (its snakemake process is gone)", file=sys.stderr)

# Helper functions and cluster resources of the runs: workflow/rules/common.smk.
include: "workflow/rules/common.smk"


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
        # summary.json is written last and marks the run done; progress.csv (or progress.csv.gz with
        # `compress_logs`) and eval.csv beside it are the rest of the contract
        summary=f"{RESULTS}/runs/{{algo}}/{{env}}/{{seed}}/summary.json",
    params:
        env_id=lambda wc: run_of(wc).env,
        steps=lambda wc: run_of(wc).steps,
        sets=run_set_args,
        outdir=lambda wc, output: str(Path(output.summary).parent),
        device=device_of,
        eval_episodes=lambda wc: " ".join(
            ([f"--eval-episodes {config['eval_episodes']}"] if "eval_episodes" in config else [])
            + ([f"--eval-freq {config['eval_freq'][run_of(wc).env]}"] if run_of(wc).env in config.get("eval_freq", {})
               else [])),
        j_eval=lambda wc: MONO[run_dir(wc)].args() if run_dir(wc) in MONO else "",
        python=PYTHON,
        compress=lambda wc, output: (f"if [ -f {Path(output.summary).parent}/progress.csv ]; then gzip -n -f "
                                     f"{Path(output.summary).parent}/progress.csv; fi"
                                     if config.get("compress_logs") else "true"),
    log:
        f"{RESULTS}/logs/{{algo}}/{{env}}/{{seed}}.log",
    threads: 1
    resources:
        runtime=lambda wc, attempt: min(run_resources(wc)["runtime"] * attempt, run_resources(wc)["max_runtime"]),
        mem_mb=lambda wc: run_resources(wc)["mem_mb"],
        gpu=lambda wc: run_resources(wc)["gpu"],
        gpu_model=lambda wc: run_resources(wc)["gpu_model"],
        slurm_extra=lambda wc: run_resources(wc)["slurm_extra"],
    shell:
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 {params.python} -m experiments.run --algo {wildcards.algo} "
        "--env {params.env_id} --seed {wildcards.seed} --steps {params.steps} --out {params.outdir} "
        "--device {params.device} {params.sets} {params.eval_episodes} {params.j_eval} --no-progress > {log} 2>&1 "
        # a run that crashed mid-training has written a `failed` summary.json: keep it, so the
        # report lists the failure; a run that wrote none (bad input) fails the job
        "|| test -f {output.summary}; {params.compress}"


# Only the runs are cluster jobs; everything else (aggregation, statistics, figures, toys,
# report) is cheap, reads many small files and runs in the submitting process.
REMOTE_RULES = {"train", "sweep_run"}
workflow.localrules(*(r.name for r in workflow.rules if r.name not in REMOTE_RULES))
