# Claim C3 on the true objective (experiments/monotonic.py): the matrix's runs named by the config's
# `monotonic:` block (MONO, defined in the Snakefile) carry a second evaluation stream, j_eval.csv —
# J(π) of the sampled policy every block of env steps — and this rule turns it into per-run metrics.
# Included by analysis.smk when the config has a `monotonic:` block; defines MONO_CSV.
MONO_CSV = f"{_T}/monotonic.csv"


rule analysis_monotonic:
    """Per C3 run: the fraction of blocks after which J(π) dropped by more than C3's tolerance."""
    input:
        [f"{d}/summary.json" for d in MONO],
        manifest=RUNS_MANIFEST,
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
