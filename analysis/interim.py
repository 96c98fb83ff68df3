"""An interim view of a profile whose matrix is still running (the replication profile takes days
of CPU): what its *finished* runs say so far, labelled as such.

    python -m analysis.interim --config experiments/config/replication.yaml

Writes ``{results}/interim/``: ``finals.csv`` / ``finals.md`` (per algorithm × env: runs finished,
final and max-over-training evaluation return, mean and Student-t 95 % interval, core-hours spent),
``ledger.csv`` / ``ledger.md`` (``analysis.ledger``, ours vs published, on the finished runs
only), ``pairs.csv`` / ``pairs.md`` (ours against its reference, each pair of ``parity.yaml``,
per env: the difference of final and of max-over-training returns with Welch's 95 % interval and
p, the like-for-like check of the implementations, not a claim) and ``mechanisms.md``
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
import scipy.stats as sps

from analysis import aggregate, claims, ledger, mechanisms


def finished(refs: list[aggregate.RunRef]) -> list[aggregate.RunRef]:
    return [r for r in refs if (Path(r.run_dir) / "summary.json").exists()]


def per_seed(curves: pd.DataFrame) -> dict[tuple[str, str], dict[int, tuple[float, float]]]:
    """(env, algo) → {seed: (final eval, max eval over training)} over the finished (ok) runs."""
    ok = curves[curves["status"] == "ok"]
    return {(env, algo): {int(seed): (ledger.final_eval(e, None), ledger.max_eval(e, None))
                          for seed, e in g.groupby("seed")}
            for (env, algo), g in ok.groupby(["env", "algo"], sort=True)}


def welch(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean x − mean y, its Welch–Satterthwaite t interval, and the two-sided p of Welch's t-test."""
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    d, se = float(x.mean() - y.mean()), float(np.sqrt(vx + vy))
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1)) if se > 0 else np.inf
    h = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    p = float(2 * sps.t.sf(abs(d) / se, df)) if se > 0 else (1.0 if d == 0 else 0.0)
    return d, d - h, d + h, p


def pairs_table(seeds: dict, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Ours (x) against its reference (y), per env where both have ≥ 2 finished runs: x − y of the
    final and of the max-over-training returns, Welch's interval and p."""
    rows = []
    for x, y in pairs:
        for env in sorted({e for e, a in seeds if a == x} & {e for e, a in seeds if a == y}):
            sx, sy = seeds[(env, x)], seeds[(env, y)]
            if min(len(sx), len(sy)) < 2:
                continue
            row = {"env": env, "x": x, "y": y, "n_x": len(sx), "n_y": len(sy)}
            for i, name in enumerate(("final", "max")):
                a, b = (np.array([v[i] for v in s.values()]) for s in (sx, sy))
                d, lo, hi, p = welch(a, b)
                row |= {f"{name}_x": float(a.mean()), f"{name}_y": float(b.mean()), f"{name}_diff": d,
                        f"{name}_lo": lo, f"{name}_hi": hi, f"{name}_p": p}
            rows.append(row)
    return pd.DataFrame(rows)


def num(x: float, sign: str = "", scale: float | None = None) -> str:
    """Returns of MinAtar (≈ 1–50) and MuJoCo (≈ 1 000s) alike: whole numbers from 100 up (``scale``:
    the magnitude that decides, e.g. the returns a difference is between)."""
    return f"{x:{sign}.0f}" if abs(x if scale is None else scale) >= 100 else f"{x:{sign}.2f}"


def pairs_markdown(t: pd.DataFrame) -> str:
    lines = ["Ours (x) against its reference (y), each pair of `experiments/config/parity.yaml`, on the finished "
             "runs: difference of the means with Welch's 95 % interval and two-sided p. A check of the "
             "implementations (identical settings; `tests/test_update_parity.py` shows their updates and rollouts "
             "equal up to the random streams), not a claim, and interim: no threshold is applied.", "",
             "| env | x | y | runs x / y | final x | final y | final x − y [95 %] | p | max x − y [95 %] | p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples(index=False):
        scale = max(abs(r.final_x), abs(r.final_y))
        d = {k: num(getattr(r, k), "+", scale)
             for k in ("final_diff", "final_lo", "final_hi", "max_diff", "max_lo", "max_hi")}
        lines.append(f"| {r.env} | {r.x} | {r.y} | {r.n_x} / {r.n_y} | {num(r.final_x)} | {num(r.final_y)} | "
                     f"{d['final_diff']} [{d['final_lo']}, {d['final_hi']}] | {r.final_p:.3f} | "
                     f"{d['max_diff']} [{d['max_lo']}, {d['max_hi']}] | {r.max_p:.3f} |")
    return "\n".join(lines) + "\n"


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
    from experiments.hyperparams import load_parity
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
        pt = pairs_table(per_seed(curves), [tuple(p) for p in load_parity()["pairs"]])
        write_text_atomic(str(out / "pairs.csv"), pt.to_csv(index=False))
        write_text_atomic(str(out / "pairs.md"), pairs_markdown(pt))
        min_active = float(claims.load_config().get("C6", {}).get("min_active", 0.01))
        act = mechanisms.activity(pd.read_parquet(T["updates.parquet"]), min_active=min_active)
        write_text_atomic(str(out / "mechanisms.md"), mechanisms_markdown(act, min_active))
    print(finals_markdown(t, len(done), len(refs)))
    print(f"{int((lt['verdict'] != '—').sum())} published numbers compared: {out / 'ledger.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
