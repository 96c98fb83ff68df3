"""An interim view of a profile whose matrix is still running (the replication profile takes days
of CPU): what its *finished* runs say so far, labelled as such.

    python -m analysis.interim --config experiments/config/replication.yaml

Writes ``{results}/interim/``: ``finals.csv`` / ``finals.md`` (per algorithm × env: runs finished,
final and max-over-training evaluation return, mean and Student-t 95 % interval, core-hours spent),
``ledger.csv`` / ``ledger.md`` (``analysis.ledger``, ours vs published, on the finished runs
only), ``pairs.csv`` / ``pairs.md`` (``analysis.pairs``, ours against its reference) and ``mechanisms.md``
(``analysis.mechanisms``: per env, how active each mechanism an ACER ablation removes is in the
finished full-ACER runs, against claims.yaml's ``C6.min_active``).
No verdict on a claim is drawn here: the claims' tests were sized for the full matrix, and a
test on whichever runs happened to finish first is not the declared test. The complete
matrix gets the ordinary pipeline (tables, figures, verdicts) from ``snakemake``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import aggregate, claims, ledger, mechanisms, pairs
from analysis.pairs import num, per_seed


def finished(refs: list[aggregate.RunRef]) -> list[aggregate.RunRef]:
    return [r for r in refs if (Path(r.run_dir) / "summary.json").exists()]


def finals_table(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per (env, algo): finished runs, mean final / max-over-training evaluation with t-intervals,
    and the wall time spent (core-hours: one core per run)."""
    ok = runs[runs["status"] == "ok"]
    seeds = per_seed(curves)
    rows = []
    for (env, algo), g in ok.groupby(["env", "algo"], sort=True):
        per = list(seeds.get((env, algo), {}).values())
        fin, mx = (np.array([p[i] for p in per]) for i in (0, 1))
        row = {"env": env, "algo": algo, "n_runs": len(per), "seeds": " ".join(str(s) for s in sorted(g["seed"])),
               "core_hours": float(g["wall_s"].sum() / 3600) if "wall_s" in g else np.nan}
        for name, x in (("final", fin), ("max", mx)):
            m, lo, hi = ledger.t_interval(x) if len(x) >= 2 else (float(x.mean()) if len(x) else np.nan, np.nan,
                                                                 np.nan)
            row |= {f"{name}_mean": m, f"{name}_lo": lo, f"{name}_hi": hi}
        rows.append(row)
    return pd.DataFrame(rows)


def finals_markdown(t: pd.DataFrame, n_done: int, n_all: int) -> str:
    def cell(r, name):
        m, lo, hi = r[f"{name}_mean"], r[f"{name}_lo"], r[f"{name}_hi"]
        return "—" if pd.isna(m) else num(m) + (f" [{num(lo)}, {num(hi)}]" if pd.notna(lo) else "")
    lines = [f"**Interim: {n_done} of {n_all} runs finished.** Evaluation return (deterministic policy), "
             "mean over the finished seeds with a Student-t 95 % interval (none with one run). No claim is "
             "judged on a part of the matrix.", "",
             "| env | algo | runs (seeds) | final eval | max eval over training | core-hours |",
             "|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        lines.append(f"| {r.env} | {r.algo} | {r.n_runs} ({r.seeds}) | {cell(r, 'final')} | {cell(r, 'max')} | "
                     f"{r.core_hours:.1f} |")
    return "\n".join(lines) + "\n"


def mechanisms_markdown(act: pd.DataFrame, min_active: float) -> str:
    lines = [f"Activity of each mechanism an ACER ablation removes, in the finished full-ACER runs (mean over "
             f"every update; active at ≥ {min_active:g}, claims.yaml C6.min_active). Interim: finished runs only.", "",
             "| env | ablation | diagnostic | what | activity | max per update | active |",
             "|---|---|---|---|---|---|---|"]
    for r in act.itertuples(index=False):
        lines.append(f"| {r.env} | {r.ablation} | {r.column} | {r.what} | {r.activity:.4g} | {r.max:.3g} | "
                     f"{'—' if pd.isna(r.active) else 'yes' if r.active else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.interim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    a = p.parse_args(argv)
    from analysis.pipeline import make_tables
    from experiments.io import write_text_atomic
    from experiments.matrix import expand, load_config

    config = load_config(a.config)
    res = config.get("results", "results")
    refs = [aggregate.RunRef.from_spec(r.out_dir(res), r) for r in expand(config, check_deps=False)]
    done = finished(refs)
    if not done:
        print(f"no finished run of {a.config} under {res}/runs yet", file=sys.stderr)
        return 1
    out = Path(res) / "interim"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        T = {k: f"{tmp}/{k}" for k in ("runs.csv", "curves.parquet", "curves.csv", "updates.parquet")}
        make_tables(done, *T.values())
        runs, curves = pd.read_csv(T["runs.csv"]), pd.read_parquet(T["curves.parquet"])
        t = finals_table(curves, runs)
        write_text_atomic(str(out / "finals.csv"), t.to_csv(index=False))
        write_text_atomic(str(out / "finals.md"), finals_markdown(t, len(done), len(refs)))
        lt = ledger.make_ledger(T["curves.parquet"], T["updates.parquet"], T["runs.csv"], str(out / "ledger.csv"),
                                str(out / "ledger.md"))
        pairs.make_pairs(T["curves.parquet"], str(out / "pairs.csv"), str(out / "pairs.md"))
        min_active = float(claims.load_config().get("C6", {}).get("min_active", 0.01))
        act = mechanisms.activity(pd.read_parquet(T["updates.parquet"]), min_active=min_active)
        write_text_atomic(str(out / "mechanisms.md"), mechanisms_markdown(act, min_active))
    print(finals_markdown(t, len(done), len(refs)))
    print(f"{int((lt['verdict'] != '—').sum())} published numbers compared: {out / 'ledger.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
