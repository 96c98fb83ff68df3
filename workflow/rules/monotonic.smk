# Claim C3 on the true objective (experiments/monotonic.py): the config's `monotonic:` runs, each
# evaluated with sampled actions every TRPO-sized block of env steps, and their per-run metrics.
# Included by analysis.smk when the config has a `monotonic:` block; defines MONO and MONO_CSV.
from experiments import monotonic as _monotonic

MONO = _monotonic.expand(config)
MONO_CSV = f"{_T}/monotonic.csv"
_mono_of = lambda wc: MONO[f"{RESULTS}/monotonic/{wc.algo}/{wc.env}/{wc.seed}"]  # noqa: E731
_mono_resources = lambda wc: job_resources(_mono_of(wc).algo, _mono_of(wc).env, _mono_of(wc).steps)  # noqa: E731
if workflow.is_main_process:
    sync_manifest(f"{RESULTS}/monotonic/MATRIX", [f"{d} {r.steps} {r.args()}" for d, r in MONO.items()],
                  [f"{d}/summary.json" for d in MONO])


rule monotonic_run:
    """One C3 run: trained as in the main matrix, J(π) of the sampled policy estimated every block."""
    output:
        summary=f"{RESULTS}/monotonic/{{algo}}/{{env}}/{{seed}}/summary.json",
        progress=f"{RESULTS}/monotonic/{{algo}}/{{env}}/{{seed}}/progress.csv",
        evals=f"{RESULTS}/monotonic/{{algo}}/{{env}}/{{seed}}/eval.csv",
    params:
        env_id=lambda wc: _mono_of(wc).env,
        steps=lambda wc: _mono_of(wc).steps,
        eval_args=lambda wc: _mono_of(wc).args(),
        sets=run_set_args,
        outdir=lambda wc, output: str(Path(output.summary).parent),
        device=device_of,
        python=PYTHON,
    log:
        f"{RESULTS}/logs/monotonic/{{algo}}/{{env}}/{{seed}}.log",
    threads: 1
    resources:
        runtime=lambda wc, attempt: min(_mono_resources(wc)["runtime"] * attempt, _mono_resources(wc)["max_runtime"]),
        mem_mb=lambda wc: _mono_resources(wc)["mem_mb"],
        gpu=lambda wc: _mono_resources(wc)["gpu"],
        gpu_model=lambda wc: _mono_resources(wc)["gpu_model"],
        slurm_extra=lambda wc: _mono_resources(wc)["slurm_extra"],
    shell:
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 {params.python} -m experiments.run --algo {wildcards.algo} "
        "--env {params.env_id} --seed {wildcards.seed} --steps {params.steps} --out {params.outdir} "
        "--device {params.device} {params.sets} {params.eval_args} --no-progress > {log} 2>&1 "
        "|| test -f {output.summary}"


rule analysis_monotonic:
    """Per C3 run: the fraction of blocks after which J(π) dropped by more than C3's tolerance."""
    input:
        [f"{d}/summary.json" for d in MONO],
        manifest=f"{RESULTS}/monotonic/MATRIX",
    output:
        csv=report(MONO_CSV, caption=_cap("monotonic_true"), category=_CAT_CLAIMS, subcategory="Downloads"),
        png=report(f"{_F}/monotonic_true_objective.png", caption=_cap("monotonic_true"), category=_CAT_MONO),
    params:
        cfg=ANALYSIS_CFG,
        runs=[{"run_dir": d, "algo": r.algo, "env": r.env, "seed": r.seed, "total_steps": r.steps, "block": r.block}
              for d, r in MONO.items()],
    log:
        f"{RESULTS}/logs/analysis/analysis_monotonic.log",
    localrule: True
    script:
        _STEP
