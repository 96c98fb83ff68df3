"""Ours against its reference: the like-for-like check of the implementations, as outcomes.

For every pair of ``experiments/config/parity.yaml`` (ours, reference: identical settings, enforced
by tests/test_parity.py) and every env where both have ≥ 2 finished seeds in common: the difference of the mean
final evaluation return and of the mean max-over-training return over the seeds both have, paired
by seed (a seed fixes the evaluation episodes' start states for every algorithm), with the paired-t
95 % interval and two-sided p. ``tests/test_update_parity.py`` shows that the pairs' rollouts and updates are equal up
to their random streams (initial weights, sub-env seeds, action noise, minibatch orders), so a
difference here is either chance or something those tests do not cover; it is a check, not a claim,
and no threshold is applied.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats as sps

from analysis import ledger


def per_seed(curves: pd.DataFrame) -> dict[tuple[str, str], dict[int, tuple[float, float]]]:
    """(env, algo) → {seed: (final eval, that run's best eval over training)} over the finished (ok) runs."""
    ok = curves[curves["status"] == "ok"]
    return {(env, algo): {int(seed): (ledger.final_eval(e), float(e["eval_return"].max()))
                          for seed, e in g.groupby("seed")}
            for (env, algo), g in ok.groupby(["env", "algo"], sort=True)}


def paired_t(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean of the per-seed differences d, its Student-t interval and the two-sided p of the paired
    t-test (p = 1 where every difference is 0)."""
    m, lo, hi = ledger.t_interval(d, confidence)
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    if se == 0:
        return m, m, m, 1.0 if m == 0 else 0.0
    return m, lo, hi, float(2 * sps.t.sf(abs(m) / se, len(d) - 1))


def pairs_table(seeds: dict, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Ours (x) against its reference (y), per env, on the seeds both have finished (≥ 2): the mean
    per-seed difference x − y of the final and of the max-over-training returns, with the paired
    t interval and p.

    Paired by seed because a run's evaluation episodes start from states drawn from its seed, the
    same for every algorithm (experiments/runner.py): on Pendulum-v1 those states move a final return
    by tens, so comparing ours on seeds 0–9 with a reference on seeds 0–2 would mix the two."""
    rows = []
    for x, y in pairs:
        for env in sorted({e for e, a in seeds if a == x} & {e for e, a in seeds if a == y}):
            sx, sy = seeds[(env, x)], seeds[(env, y)]
            common = sorted(set(sx) & set(sy))
            if len(common) < 2:
                continue
            row = {"env": env, "x": x, "y": y, "n": len(common), "seeds": " ".join(map(str, common)),
                   "x_only": len(sx) - len(common), "y_only": len(sy) - len(common)}
            for i, name in enumerate(("final", "max")):
                a, b = (np.array([s[k][i] for k in common]) for s in (sx, sy))
                d, lo, hi, p = paired_t(a - b)
                row |= {f"{name}_x": float(a.mean()), f"{name}_y": float(b.mean()), f"{name}_diff": d,
                        f"{name}_lo": lo, f"{name}_hi": hi, f"{name}_p": p}
            rows.append(row)
    return pd.DataFrame(rows)


def num(x: float, sign: str = "", scale: float | None = None) -> str:
    """Returns of MinAtar (≈ 1–50) and MuJoCo (≈ 1 000s) alike: whole numbers from 100 up (``scale``:
    the magnitude that decides, e.g. the returns a difference is between)."""
    return f"{x:{sign}.0f}" if abs(x if scale is None else scale) >= 100 else f"{x:{sign}.2f}"


INTRO = ("Ours (x) against its reference (y), each pair of `experiments/config/parity.yaml`, on the seeds both "
         "have finished (paired: a seed fixes its evaluation episodes' start states for every algorithm): the mean "
         "per-seed difference with its paired-t 95 % interval and two-sided p. A check of the implementations "
         "(identical settings; `tests/test_update_parity.py` shows their rollouts and updates equal up to the "
         "random streams), not a claim: no threshold is applied.")


def pairs_markdown(t: pd.DataFrame) -> str:
    lines = [INTRO, "",
             "| env | x | y | seeds | final x | final y | final x − y [95 %] | p | max x − y [95 %] | p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples(index=False):
        scale = max(abs(r.final_x), abs(r.final_y))
        d = {k: num(getattr(r, k), "+", scale)
             for k in ("final_diff", "final_lo", "final_hi", "max_diff", "max_lo", "max_hi")}
        lines.append(f"| {r.env} | {r.x} | {r.y} | {r.seeds} | {num(r.final_x)} | {num(r.final_y)} | "
                     f"{d['final_diff']} [{d['final_lo']}, {d['final_hi']}] | {r.final_p:.3f} | "
                     f"{d['max_diff']} [{d['max_lo']}, {d['max_hi']}] | {r.max_p:.3f} |")
    return "\n".join(lines) + "\n"


def make_pairs(curves_parquet: str, out_csv: str, out_md: str, out_html: str | None = None) -> pd.DataFrame:
    """The pipeline step: ``pairs.csv``, ``pairs.md`` (and ``pairs.html``) from ``curves.parquet``."""
    from analysis import html
    from experiments.hyperparams import load_parity
    from experiments.io import write_text_atomic

    t = pairs_table(per_seed(pd.read_parquet(curves_parquet)), [tuple(p) for p in load_parity()["pairs"]])
    write_text_atomic(out_csv, t.to_csv(index=False))
    write_text_atomic(out_md, pairs_markdown(t))
    if out_html:
        html.write_page(out_html, "Ours vs the references", [(INTRO, html.table_html(t))])
    return t
