"""Ours vs published: each published number set against the statistic its source computed, from our runs.

The statistics (``analysis/data/published.csv``'s ``statistic``; ``../shared/reference/anchors.md``):

- ``max_eval`` — Tianshou (``examples/mujoco/analysis.py``): the seeds' test returns are averaged at
  each evaluation step and the *maximum of that mean curve* within the budget is reported, ± the
  std over seeds at that step. Ours: the same on our evaluation curves, first thinned to the
  source's evaluation interval (``eval_every``: Tianshou tests every 30 000 steps, we every 10 000,
  and a maximum over more noisy points is higher). Our interval, like their ±, is over the seeds'
  values at that step; neither counts the choice of the step.
- ``final_eval`` — rl-baselines3-zoo: the deterministic evaluation of one run's final agent.
- ``final_train`` — CleanRL, OpenAI Baselines: the mean raw return of the last ``window`` training
  episodes (CleanRL's and ppo2's 100; trpo_mpi's ``EpRewMean`` keeps 40).

The budget. A run stops after the update that crosses it: 1 001 472 steps for 1M at 2 048 steps
per update. The sources' runs do the same. So the part of a run within ``budget`` + one update is used.

The test (``verdict``: ours ``above``, ``below`` or ``not distinguishable``) depends on what the source
publishes:

- a std over ≥ 2 seeds (Tianshou, CleanRL): Welch's t on ours against their mean, std and n.
  Ours are the per-run values; for ``max_eval``, the seeds' values at our mean curve's best step,
  as theirs. ``diff_lo``/``diff_hi`` is its 95 % interval of ours − theirs.
- one run (rl-zoo; its ± is over evaluation episodes of that one agent): where their number lies
  against our 95 % *prediction* interval for one new run, mean ± t·s·√(1 + 1/n).
- no spread (Baselines' 6-run means, the MinAtar and ACKTR papers): no test. The note says where
  their mean lies against our 95 % interval of the mean.

A different env version (v5 here, v1–v4 there) is always named: MuJoCo v5 models differ from v3/v4
(e.g. contact and observation changes), so a gap can be the env's as much as the algorithm's. Where two
of our algorithms give the same per-run numbers (NPG and TRPO, when the line search never acts), the note
says so: the two rows are then one result, not two.
"""
from __future__ import annotations

from collections.abc import Mapping
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
STATISTICS = ("max_eval", "final_eval", "final_train")
LAST_EPISODES = 100          # final_train's window where the source does not say otherwise
COLUMNS = ["source", "statistic", "env", "env_version", "budget", "published_algo", "published", "published_spread",
           "spread_kind", "published_seeds", "algo", "n_runs", "ours", "ci_lo", "ci_hi", "test", "diff_lo", "diff_hi",
           "p", "verdict", "note"]


def final_eval(evals: pd.DataFrame) -> float:
    """The last evaluation of one run (the zoo's: the final agent, deterministic)."""
    return float(evals.sort_values("step")["eval_return"].iloc[-1]) if len(evals) else np.nan


def final_train(updates: pd.DataFrame, window: int = LAST_EPISODES) -> float:
    """Mean raw return of the last ``window`` training episodes of one run. progress.csv logs, per
    update, the mean return of the episodes finished since the last row and their count: walk back
    from the end, weighting rows by their episode count, the oldest one partly."""
    u = updates.dropna(subset=["episode_return"]).sort_values("step")
    u = u[u["episodes"] > 0]
    if u.empty:
        return np.nan
    total, weight = 0.0, 0.0
    for ret, n in zip(u["episode_return"].to_numpy()[::-1], u["episodes"].to_numpy()[::-1]):
        take = min(float(n), window - weight)
        total, weight = total + take * float(ret), weight + take
        if weight >= window:
            break
    return total / weight


def thin(evals: pd.DataFrame, every: int | None) -> pd.DataFrame:
    """Per seed, the first evaluation at or after each multiple of ``every`` (all of them if None),
    with ``slot`` = that multiple's index: the evaluation grid of a source that tests every ``every`` steps."""
    e = evals.assign(slot=(evals["step"] // every) if every else evals["step"])
    return e.sort_values("step").groupby(["seed", "slot"], as_index=False).first()


def max_of_mean_curve(evals: pd.DataFrame, every: int | None) -> np.ndarray:
    """Tianshou's max_eval on our runs: the seeds' values at the best slot of the seed-mean curve (their
    mean is the statistic; their spread, like Tianshou's ±, is the seeds' at that step). Only slots every
    seed reached are used."""
    grid = thin(evals, every).pivot(index="seed", columns="slot", values="eval_return").dropna(axis=1)
    if grid.shape[1] == 0:
        return np.array([])
    y = grid.to_numpy(float)                                   # seeds × slots
    return y[:, int(np.argmax(y.mean(0)))]


def t_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean (n ≥ 2)."""
    x = np.asarray(x, dtype=float)
    m, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))
    h = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1)) * se
    return m, m - h, m + h


def welch(x: np.ndarray, mean: float, sd: float, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Welch's t of mean(x) − mean against a published mean, sd, n: (diff_lo, diff_hi, two-sided p)."""
    x = np.asarray(x, dtype=float)
    v1, v2 = x.var(ddof=1) / len(x), sd ** 2 / n
    d, se = float(x.mean() - mean), float(np.sqrt(v1 + v2))
    if se == 0:
        return d, d, (1.0 if d == 0 else 0.0)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (len(x) - 1) + v2 ** 2 / (n - 1))
    h = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    return d - h, d + h, float(2 * sps.t.sf(abs(d) / se, df))


def prediction_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Where one new run of ours would land: mean ± t·s·√(1 + 1/n)."""
    x = np.asarray(x, dtype=float)
    h = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1)) * float(x.std(ddof=1)) * np.sqrt(1 + 1 / len(x))
    return float(x.mean()) - h, float(x.mean()) + h


def _where(value: float, lo: float, hi: float) -> str:
    return "not distinguishable" if lo <= value <= hi else ("above" if lo > value else "below")


def load_published(path: Path | str = PUBLISHED_CSV) -> pd.DataFrame:
    d = pd.read_csv(path, dtype={"env_version": str})
    bad = sorted(set(d["statistic"]) - set(STATISTICS))
    if bad:
        raise ValueError(f"{path}: unknown statistic(s) {bad}; known: {sorted(STATISTICS)}")
    unknown = sorted(set(d["algo"]) - set(FAMILY))
    if unknown:
        raise ValueError(f"{path}: unknown published algorithm(s) {unknown}; known: {sorted(FAMILY)}")
    for col, default in (("eval_every", np.nan), ("window", LAST_EPISODES), ("spread_kind", "")):
        d[col] = d[col].fillna(default) if col in d else default
    return d


def _slack(updates: pd.DataFrame) -> int:
    """One update's env steps (the largest step between two logged updates): a run's overshoot past its budget."""
    steps = np.sort(updates["step"].unique())
    return int(np.diff(steps).max()) if len(steps) > 1 else 0


def ours(curves: pd.DataFrame, updates: pd.DataFrame, p, algo: str) -> tuple[np.ndarray, float, float]:
    """Our algorithm ``algo``'s per-run values for the published row ``p`` (for max_eval: the seeds' values
    at our best step) and their Student-t 95 % interval of the mean."""
    c = curves[(curves["algo"] == algo) & (curves["env"] == p.env) & (curves["status"] == "ok")]
    u = updates[(updates["algo"] == algo) & (updates["env"] == p.env)]
    cut = int(p.budget) + _slack(u)
    c, u = c[c["step"] <= cut], u[u["step"] <= cut]
    if p.statistic == "max_eval":
        x = max_of_mean_curve(c, int(p.eval_every) if pd.notna(p.eval_every) else None)
    elif p.statistic == "final_eval":
        x = np.array([final_eval(g) for _, g in c.groupby("seed")])
    else:
        x = np.array([final_train(u[u["seed"] == seed], int(p.window)) for seed in sorted(c["seed"].unique())])
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return x, np.nan, np.nan
    _, lo, hi = t_interval(x)
    return x, lo, hi


def judge(x: np.ndarray, p) -> dict:
    """The test for one row, by what the source published (module docstring)."""
    spread, n = p.spread, int(p.seeds)
    if pd.notna(spread) and n >= 2:
        lo, hi, pv = welch(x, float(p.value), float(spread), n)
        return {"test": "Welch t, ours − theirs", "diff_lo": lo, "diff_hi": hi, "p": pv,
                "verdict": _where(0.0, lo, hi)}           # where 0 lies against the interval of ours − theirs
    if n == 1:
        lo, hi = prediction_interval(x)
        return {"test": "their one run v our 95 % prediction interval", "verdict": _where(float(p.value), lo, hi)}
    return {"test": "none: no spread published", "verdict": "no test"}


def ledger_table(published: pd.DataFrame, curves: pd.DataFrame, updates: pd.DataFrame,
                 runs: pd.DataFrame) -> pd.DataFrame:
    """One row per published number × our algorithm that implements it and has runs on its env."""
    ok = runs[runs["status"] == "ok"]
    steps = ok.groupby(["algo", "env"])["total_steps"].min()
    rows, seen = [], {}
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
                   "published_spread": p.spread, "spread_kind": p.spread_kind, "published_seeds": int(p.seeds),
                   "algo": algo, "n_runs": 0, "ours": np.nan, "ci_lo": np.nan, "ci_hi": np.nan, "test": "",
                   "diff_lo": np.nan, "diff_hi": np.nan, "p": np.nan, "verdict": "—"}
            if steps[(algo, p.env)] < p.budget:
                notes.insert(0, f"our budget {int(steps[(algo, p.env)]):,} < {int(p.budget):,}: not compared")
            else:
                x, lo, hi = ours(curves, updates, p, algo)
                row["n_runs"] = len(x)
                if len(x) >= 2:
                    row |= {"ours": float(x.mean()), "ci_lo": lo, "ci_hi": hi} | judge(x, p)
                    if row["verdict"] == "no test":
                        notes.append(_position(float(p.value), lo, hi))
                    key = (p.statistic, p.env, int(p.budget), str(p.eval_every), int(p.window))
                    twin = [a for a, v in seen.get(key, {}).items()
                            if a != algo and len(v) == len(x) and np.array_equal(v, x)]
                    if twin:
                        notes.append(f"the same per-run numbers as {twin[0]}'s runs (one result, not two)")
                    seen.setdefault(key, {})[algo] = x
            row["note"] = "; ".join(notes)
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _position(value: float, lo: float, hi: float) -> str:
    """``_where`` said from the published side: ours 'above' is their mean lying below our interval."""
    where = {"not distinguishable": "inside", "above": "below", "below": "above"}[_where(value, lo, hi)]
    return f"their mean lies {where} our 95 % interval of the mean (no test: no spread published)"


def to_markdown(t: pd.DataFrame) -> str:
    skipped = t[t["verdict"] == "—"]
    t = t[t["verdict"] != "—"]
    tail = (f"\n{len(skipped)} more published numbers match an env of this matrix but not its budget or runs "
            f"({', '.join(sorted(set(skipped['env'])))}); all are in ledger.csv.\n" if len(skipped) else "")
    head = ("| env | statistic | published (source, runs; ± what) | ours | runs | mean [95 % CI] | ours − theirs "
            "(Welch 95 %, p) | verdict | note |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in t.itertuples(index=False):
        spread = f" ± {r.published_spread:g}" if pd.notna(r.published_spread) else ""
        kind = f"; ± = {r.spread_kind}" if spread and isinstance(r.spread_kind, str) and r.spread_kind else ""
        ours_ = f"{r.ours:.0f} [{r.ci_lo:.0f}, {r.ci_hi:.0f}]" if pd.notna(r.ours) else "—"
        diff = (f"{r.diff_lo:+.0f} … {r.diff_hi:+.0f} (p = {r.p:.2g})" if pd.notna(r.diff_lo) else
                ("prediction interval" if r.published_seeds == 1 else "—"))
        lines.append(f"| {r.env} | {r.statistic} | {r.published_algo} {r.published:g}{spread} ({r.source}, "
                     f"{r.published_seeds}{kind}) | {r.algo} | {r.n_runs} | {ours_} | {diff} | {r.verdict} "
                     f"| {r.note} |")
    if not lines:
        return "No published number matches an env and budget of this matrix.\n" + tail
    return head + "\n".join(lines) + "\n" + tail


INTRO = ("Each published number next to the statistic its source computed, from our runs within the published "
         "budget (+ the update that crosses it): max_eval = the maximum over evaluation steps of the seed-mean "
         "curve, on the source's evaluation grid (Tianshou); final_eval = the final agent's deterministic evaluation "
         "(rl-baselines3-zoo, one run); final_train = the mean of the last training episodes (CleanRL and ppo2: 100; "
         "trpo_mpi: 40). Ours: mean over seeds with a Student-t 95 % interval (for max_eval: over the seeds' values "
         "at the best step, as the source's ±). Verdict: Welch's t against the source's mean, std and seeds where it "
         "publishes them; for one published run, whether it lies in our 95 % prediction interval for one run; no "
         "test where no spread is published. Each row is its own test at 5 %, with no correction over the rows: a "
         "handful of 'above'/'below' among many rows is expected by chance. Our evaluations are deterministic; "
         "Tianshou's test episodes sample "
         "actions. Env versions differ (v5 here): a gap can be the env's as much as the algorithm's. Data: "
         "analysis/data/published.csv; method: analysis/ledger.py.")


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
