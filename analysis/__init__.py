"""Aggregation of per-run results into tidy tables, statistics, figures and claim verdicts."""
