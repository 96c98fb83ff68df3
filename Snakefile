# The replication DAG: seeds × envs × algorithms → per-run results → tables, figures, report.
#
#   snakemake --cores all                                   # the default matrix
#   snakemake --cores all --configfile experiments/config/smoke.yaml
#   snakemake --report results/report.html                  # the HTML report
import math
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")
sys.path.insert(0, workflow.basedir)

from experiments.envs import load_catalog   # noqa: E402
from experiments.matrix import expand as expand_matrix   # noqa: E402

# The default matrix only when no --configfile/--config is given: Snakemake deep-merges a
# `configfile:` with the command line's, which would leak default steps/sweeps into others.
if "profile" not in config:
    configfile: "experiments/config/default.yaml"
validate(config, "experiments/schema/config.schema.yaml")

RESULTS = config.get("results", "results")
RUNS = {r.out_dir(RESULTS): r for r in expand_matrix(config)}   # validated before any job starts


def run_of(wc):
    return RUNS[f"{RESULTS}/runs/{wc.algo}/{wc.env}/{wc.seed}"]


def run_set_args(wc):
    sets = config.get("set", {}).get(wc.algo, {})
    return " ".join(f"--set {k}={v if not isinstance(v, list) else ','.join(map(str, v))}" for k, v in sets.items())


# ---- cluster job resources of one run (rules `train` and `sweep_run`) -----------------------
# Per env family: `rate`, env steps/s of one run on one core with its evaluations, set low
# (measured on a loaded 2-core VM: classic 600-2500, Hopper-v5 1700-2200 for PPO/TRPO/ACER,
# Pong-v5 PPO 70 on CPU); `mem_mb`, peak memory (Atari: ACER's 400k-transition replay).
# runtime = 1.5 x steps / rate, in minutes, >= 10, x attempt, <= max_runtime: a run killed at
# its time limit is retried (profile `retries`) and resumes from its checkpoint.pt, so an
# Atari run longer than max_runtime needs several attempts (--retries N). The local executor ignores
# runtime and gpu; mem_mb limits local runs only with --resources mem_mb=N.
# Config `cluster: {FAMILY: {gpu, gpu_model, slurm_extra, mem_mb, runtime_factor, max_runtime}}` overrides
# per family, e.g. `cluster: {atari: {gpu: 1}}`; a run with gpu >= 1 gets `--device auto`.
FAMILY_RESOURCES = {
    "classic": {"rate": 300, "mem_mb": 2000},
    "mujoco": {"rate": 300, "mem_mb": 3000},
    "atari": {"rate": 40, "mem_mb": 16000},
}
SLOWER = {"acer": 3}   # algorithm-name prefixes slower than their family's rate (replay)
MAX_RUNTIME = 2880     # minutes (48 h, a common partition limit): longer runs continue in retries
CLUSTER = config.get("cluster", {})
_unknown = set(CLUSTER) - set(FAMILY_RESOURCES)
if _unknown:
    raise ValueError(f"config `cluster`: unknown env families {sorted(_unknown)}; known: {sorted(FAMILY_RESOURCES)}")
CATALOG = load_catalog()


def job_resources(algo, env_id, steps):
    fam = CATALOG.get(env_id).family
    base, over = FAMILY_RESOURCES[fam], CLUSTER.get(fam, {})
    slow = next((f for prefix, f in SLOWER.items() if algo.startswith(prefix)), 1)
    minutes = 1.5 * steps * slow * over.get("runtime_factor", 1) / base["rate"] / 60
    return {"runtime": max(10, math.ceil(minutes)), "max_runtime": int(over.get("max_runtime", MAX_RUNTIME)),
            "mem_mb": int(over.get("mem_mb", base["mem_mb"])),
            # None leaves a resource unset (the Kubernetes executor treats any `gpu`, even 0, as a request)
            "gpu": int(over["gpu"]) if over.get("gpu") else None, "gpu_model": over.get("gpu_model"),
            "slurm_extra": over.get("slurm_extra")}


def run_resources(wc):
    r = run_of(wc)
    return job_resources(r.algo, r.env, r.steps)


def device_of(wc, resources):
    """`auto` (CUDA if visible, else CPU) for runs given a GPU; CPU otherwise (small nets)."""
    return "auto" if int(resources.get("gpu", 0) or 0) else "cpu"


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
        device=device_of,
        eval_episodes=f"--eval-episodes {config['eval_episodes']}" if "eval_episodes" in config else "",
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
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 {sys.executable} -m experiments.run --algo {wildcards.algo} "
        "--env {params.env_id} --seed {wildcards.seed} --steps {params.steps} --out {params.outdir} "
        "--device {params.device} {params.sets} {params.eval_episodes} --no-progress > {log} 2>&1 "
        # a run that crashed mid-training has written a `failed` summary.json: keep it, so the
        # report lists the failure; a run that wrote none (bad input) fails the job
        "|| test -f {output.summary}"


# Only the runs are cluster jobs; everything else (aggregation, statistics, figures, toys,
# report) is cheap, reads many small files and runs in the submitting process.
REMOTE_RULES = {"train", "sweep_run"}
workflow.localrules(*(r.name for r in workflow.rules if r.name not in REMOTE_RULES))
