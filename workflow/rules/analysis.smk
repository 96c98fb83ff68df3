# Aggregation of the per-run results into tables (filled out by the analysis issue).

ANALYSIS_TARGETS = [f"{RESULTS}/tables/runs.csv"]


rule aggregate_runs:
    """All runs' summaries in one table (one row per run, failed runs included)."""
    input:
        [f"{d}/summary.json" for d in RUNS],
    output:
        csv=f"{RESULTS}/tables/runs.csv",
    localrule: True
    run:
        from analysis.aggregate import summaries_table
        summaries_table(input).to_csv(output.csv, index=False)
