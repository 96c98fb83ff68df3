"""Ours vs published: each published number set against *the same statistic* computed from our runs.

The published numbers (``analysis/data/published.csv``) come from suites that each report a
different statistic (``../shared/reference/anchors.md``):

- ``max_eval``   — Tianshou: the best point of the evaluation curve within the budget, per seed,
  averaged over seeds;
- ``final_eval`` — rl-baselines3-zoo: the deterministic evaluation of the final agent (one run);
- ``final_train`` — CleanRL, OpenAI Baselines: the mean return of the last 100 *training*
  episodes at the end of the budget (Baselines' ``eprewmean``; its benchmark page does not say
  more).

For each published row and each of our algorithms that implements the published one
(``FAMILY``), the per-run statistic is computed on the part of our run within the published
budget, then its mean over seeds with a Student-t 95 % interval (``t_interval``: with 3–10 seeds a
percentile bootstrap of the mean undercovers; the t interval is exact for normal returns). The
verdict says where the published value lies: inside our interval (``within``), below it (ours
``above``) or above it (ours ``below``); ``—`` where we have fewer than 2 runs or a smaller budget.
A different env version (v5 here, v1–v4 there) is always named: MuJoCo v5 models differ from v3/v4
(e.g. contact and observation changes), so a gap can be the env's as much as the algorithm's.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

PUBLISHED_CSV = Path(__file__).resolve().parent / "data" / "published.csv"

# published algorithm → our algorithms implementing it (ours first, then the SB3 reference)
FAMILY: Mapping[str, tuple[str, ...]] = {
    "ppo": ("ppo", "sb3-ppo"),
    "trpo": ("trpo", "sb3-trpo"),
    "npg": ("npg",),
    "a2c": ("sb3-a2c",),
    "acer": ("acer",),
    "acktr": ("acktr",),
}
LAST_EPISODES = 100
COLUMNS = ["source", "statistic", "env", "env_version", "budget", "published_algo", "published", "published_spread",
           "published_seeds", "algo", "n_runs", "ours", "ci_lo", "ci_hi", "verdict", "note"]


def max_eval(evals: pd.DataFrame, updates: pd.DataFrame) -> float:
    """Best mean evaluation return of one run (Tianshou's statistic)."""
    return float(evals["eval_return"].max()) if len(evals) else np.nan


def final_eval(evals: pd.DataFrame, updates: pd.DataFrame) -> float:
    """The last evaluation of one run (the zoo's: the final agent, deterministic)."""
    return float(evals.sort_values("step")["eval_return"].iloc[-1]) if len(evals) else np.nan


def final_train(evals: pd.DataFrame, updates: pd.DataFrame) -> float:
    """Mean raw return of the last ``LAST_EPISODES`` training episodes of one run. progress.csv
    logs, per update, the mean return of the episodes finished since the last row and their
    count: walk back from the end, weighting rows by their episode count, the oldest one partly."""
    u = updates.dropna(subset=["episode_return"]).sort_values("step")
    u = u[u["episodes"] > 0]
    if u.empty:
        return np.nan
    total, weight = 0.0, 0.0
    for ret, n in zip(u["episode_return"].to_numpy()[::-1], u["episodes"].to_numpy()[::-1]):
        take = min(float(n), LAST_EPISODES - weight)
        total, weight = total + take * float(ret), weight + take
        if weight >= LAST_EPISODES:
            break
    return total / weight


STATISTICS: Mapping[str, Callable[[pd.DataFrame, pd.DataFrame], float]] = {
    "max_eval": max_eval, "final_eval": final_eval, "final_train": final_train}


def t_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean (n ≥ 2)."""
    x = np.asarray(x, dtype=float)
    m, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))
    h = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1)) * se
    return m, m - h, m + h


def load_published(path: Path | str = PUBLISHED_CSV) -> pd.DataFrame:
    d = pd.read_csv(path, dtype={"env_version": str})
    bad = sorted(set(d["statistic"]) - set(STATISTICS))
    if bad:
        raise ValueError(f"{path}: unknown statistic(s) {bad}; known: {sorted(STATISTICS)}")
    unknown = sorted(set(d["algo"]) - set(FAMILY))
    if unknown:
        raise ValueError(f"{path}: unknown published algorithm(s) {unknown}; known: {sorted(FAMILY)}")
    return d


def per_run(curves: pd.DataFrame, updates: pd.DataFrame, statistic: str, algo: str, env: str,
            budget: int) -> np.ndarray:
    """The statistic for every ok run of (algo, env), on the steps ≤ budget."""
    fn = STATISTICS[statistic]
    c = curves[(curves["algo"] == algo) & (curves["env"] == env) & (curves["status"] == "ok")
               & (curves["step"] <= budget)]
    u = updates[(updates["algo"] == algo) & (updates["env"] == env) & (updates["step"] <= budget)]
    vals = [fn(g, u[u["seed"] == seed]) for seed, g in c.groupby("seed")]
    return np.array([v for v in vals if np.isfinite(v)])


def ledger_table(published: pd.DataFrame, curves: pd.DataFrame, updates: pd.DataFrame,
                 runs: pd.DataFrame) -> pd.DataFrame:
    """One row per published number × our algorithm that implements it and has runs on its env."""
    ok = runs[runs["status"] == "ok"]
    steps = ok.groupby(["algo", "env"])["total_steps"].min()
    rows = []
    for p in published.itertuples(index=False):
        for algo in FAMILY[p.algo]:
            if (algo, p.env) not in steps.index:
                continue
            ours_env = p.env.rsplit("-", 1)[-1]
            notes = [] if str(p.env_version) == ours_env else [f"env {ours_env} here, {p.env_version} there"]
            if isinstance(p.notes, str) and p.notes:
                notes.append(p.notes)
            row = {"source": p.source, "statistic": p.statistic, "env": p.env, "env_version": p.env_version,
                   "budget": int(p.budget), "published_algo": p.algo, "published": p.value,
                   "published_spread": p.spread, "published_seeds": int(p.seeds), "algo": algo,
                   "n_runs": 0, "ours": np.nan, "ci_lo": np.nan, "ci_hi": np.nan, "verdict": "—"}
            if steps[(algo, p.env)] < p.budget:
                notes.insert(0, f"our budget {int(steps[(algo, p.env)]):,} < {int(p.budget):,}: not compared")
            else:
                x = per_run(curves, updates, p.statistic, algo, p.env, int(p.budget))
                row["n_runs"] = len(x)
                if len(x) >= 2:
                    row["ours"], row["ci_lo"], row["ci_hi"] = t_interval(x)
                    row["verdict"] = ("within" if row["ci_lo"] <= p.value <= row["ci_hi"]
                                      else "above" if row["ci_lo"] > p.value else "below")
            row["note"] = "; ".join(notes)
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def to_markdown(t: pd.DataFrame) -> str:
    skipped = t[t["verdict"] == "—"]
    t = t[t["verdict"] != "—"]
    tail = (f"\n{len(skipped)} more published numbers match an env of this matrix but not its budget or runs "
            f"({', '.join(sorted(set(skipped['env'])))}); all are in ledger.csv.\n" if len(skipped) else "")
    head = ("| env | statistic | published (source, seeds) | ours | runs | mean [95 % t-CI] | verdict | note |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in t.itertuples(index=False):
        spread = f" ± {r.published_spread:g}" if pd.notna(r.published_spread) else ""
        ours = f"{r.ours:.0f} [{r.ci_lo:.0f}, {r.ci_hi:.0f}]" if pd.notna(r.ours) else "—"
        lines.append(f"| {r.env} | {r.statistic} | {r.published_algo} {r.published:g}{spread} ({r.source}, "
                     f"{r.published_seeds}) | {r.algo} | {r.n_runs} | {ours} | {r.verdict} | {r.note} |")
    if not lines:
        return "No published number matches an env and budget of this matrix.\n" + tail
    return head + "\n".join(lines) + "\n" + tail


INTRO = ("Each published number next to the same statistic computed from our runs within the published "
         "budget: max_eval = best evaluation of a run (Tianshou), final_eval = the final agent's deterministic "
         "evaluation (rl-baselines3-zoo, one run), final_train = mean of the last 100 training episodes (CleanRL, "
         "Baselines). Ours: mean over seeds with a Student-t 95 % interval; verdict: where the published value "
         "lies relative to that interval. Env versions differ (v5 here): a gap can be the env's as much as the "
         "algorithm's. Data: analysis/data/published.csv.")


def make_ledger(curves_path: str, updates_path: str, runs_path: str, out_csv: str, out_md: str,
                out_html: str | None = None, published_path: str | Path = PUBLISHED_CSV) -> pd.DataFrame:
    from analysis import html
    from experiments.io import write_text_atomic

    t = ledger_table(load_published(published_path), pd.read_parquet(curves_path), pd.read_parquet(updates_path),
                     pd.read_csv(runs_path))
    write_text_atomic(out_csv, t.to_csv(index=False))
    write_text_atomic(out_md, INTRO + "\n\n" + to_markdown(t))
    if out_html:
        shown = t[t["verdict"] != "—"].round({"ours": 1, "ci_lo": 1, "ci_hi": 1})
        html.write_page(out_html, "Ours vs published", [
            (INTRO, html.table_html(shown, [c for c in COLUMNS if c != "budget"])),
            (f"{len(t) - len(shown)} published numbers on envs of this matrix are not compared (our budget is "
             "smaller, or fewer than 2 runs); they are listed in ledger.csv.", "")])
    return t
