# The seed's toy experiments (numpy only, seconds to a minute each; no gym), timed into {RESULTS}/timing
# (experiments/timed.py) for the DAG's time accounting.
# Included by the Snakefile, which defines RESULTS and PYTHON (workflow/rules/common.smk).
from pathlib import Path

TOY_TARGETS = [
    f"{RESULTS}/toys/gaussian_trajectories.csv",
    f"{RESULTS}/toys/gaussian_summary.csv",
    f"{RESULTS}/toys/npg_vs_pg.csv",
    f"{RESULTS}/toys/npg_vs_pg_summary.csv",
    f"{RESULTS}/toys/compatible.csv",
    f"{RESULTS}/toys/ng_approx.csv",
]


rule toy_gaussian_manifold:
    """§4.5.1: fitting N(μ, σ) by gradient descent vs natural gradient descent."""
    output:
        trajectories=f"{RESULTS}/toys/gaussian_trajectories.csv",
        summary=f"{RESULTS}/toys/gaussian_summary.csv",
    params:
        outdir=lambda wc, output: str(Path(output.summary).parent),
        python=PYTHON,
        timing=timing_dir,
    log:
        f"{RESULTS}/logs/toys/gaussian_manifold.log",
    localrule: True
    shell:
        "{params.python} -m experiments.timed {params.timing} toy_gaussian_manifold -- {params.python} -m experiments.toys.gaussian_manifold --out {params.outdir} > {log} 2>&1"


rule toy_npg_vs_pg:
    """§4.5.2: natural vs vanilla policy gradient, exact gradients on a chain MDP."""
    output:
        curves=f"{RESULTS}/toys/npg_vs_pg.csv",
        summary=f"{RESULTS}/toys/npg_vs_pg_summary.csv",
    params:
        outdir=lambda wc, output: str(Path(output.summary).parent),
        python=PYTHON,
        timing=timing_dir,
    log:
        f"{RESULTS}/logs/toys/npg_vs_pg.log",
    localrule: True
    shell:
        "{params.python} -m experiments.timed {params.timing} toy_npg_vs_pg -- {params.python} -m experiments.toys.npg_vs_pg --out {params.outdir} > {log} 2>&1"


rule toy_compatible:
    """§4.5.1: compatible function approximation (NAC) yields the natural gradient, claim C7."""
    output:
        f"{RESULTS}/toys/compatible.csv",
    params:
        outdir=lambda wc, output: str(Path(output[0]).parent),
        python=PYTHON,
        timing=timing_dir,
    log:
        f"{RESULTS}/logs/toys/compatible.log",
    localrule: True
    shell:
        "{params.python} -m experiments.timed {params.timing} toy_compatible -- {params.python} -m experiments.toys.compatible --out {params.outdir} > {log} 2>&1"


rule toy_ng_approx:
    """§4.5.2: CG and K-FAC against the exact natural gradient on small softmax MLPs, claim C8."""
    output:
        f"{RESULTS}/toys/ng_approx.csv",
    params:
        outdir=lambda wc, output: str(Path(output[0]).parent),
        python=PYTHON,
        timing=timing_dir,
    log:
        f"{RESULTS}/logs/toys/ng_approx.log",
    localrule: True
    shell:
        "{params.python} -m experiments.timed {params.timing} toy_ng_approx -- env OMP_NUM_THREADS=1 {params.python} -m experiments.toys.ng_approx --out {params.outdir} > {log} 2>&1"
