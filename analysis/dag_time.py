"""Where the DAG's core-time went: inside training runs, or on start-up, analysis and scheduling.

Every run's summary.json records ``wall_s`` (training and its evaluations), ``process_s`` (from its
process's start: interpreter, imports, env and network construction, writing) and when it finished;
every analysis step and toy experiment appends its own start and end to ``timing/steps_time.jsonl``
(``analysis/smk_step.py``, ``experiments/timed.py``; ``logs/**/*.time.json`` files are read too).
Jobs are grouped into *sittings*: runs of activity with no gap longer than ``GAP_S``, so that a
snapshot assembled over several invocations is not read as one long DAG, nor a later redraw as part
of it. For the last sitting that trained runs:

    core-time       = cores × span            span: the first job's start to the last job's end
    in runs         = Σ wall_s                the share issue 17 asks to be ≥ 90 % (a run resumed from a
                                              checkpoint: at most its last process's process_s)
    run start-up    = Σ (process_s − wall_s)
    toy experiments = Σ their durations        the source's toy problems: experiments, not overhead
    analysis steps  = Σ their durations
    the rest        = core-time − the above   Snakemake itself, job turnaround, idle cores

``cores`` is the sitting's own ``--cores``, as its ``dag_time`` step recorded it in
``steps_time.jsonl``; for a sitting without such a record (the current one, before its ``dag_time``
step has written it; or records made before 2026-11-27) the invocation's ``--cores``, which misreads a
sitting made with other cores by that factor (the table says which it used).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

GAP_S = 120.0
RUN_KINDS = ("run", "sweep run")


def _finished(s: dict) -> float | None:
    if s.get("finished_unix") is not None:
        return float(s["finished_unix"])
    try:   # older summaries: one-second resolution
        return datetime.strptime(s["finished_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def jobs(results: str | Path) -> pd.DataFrame:
    """One row per job that left a record: kind ('run', 'sweep run', 'analysis'), start, end, in_run."""
    root, rows = Path(results), []
    for kind, pattern in (("run", "runs/*/*/*/summary.json"), ("sweep run", "sweeps/*/*/*/*/summary.json")):
        for f in sorted(root.glob(pattern)):
            s = json.loads(f.read_text())
            end = _finished(s)
            if end is None or s.get("process_s") is None or s.get("wall_s") is None:
                rows.append({"kind": kind, "start": None, "end": end, "in_run": s.get("wall_s"), "job": str(f.parent)})
                continue
            # a run resumed from a checkpoint carries the earlier processes' time in wall_s; this process
            # can have spent at most process_s inside it (its own start-up then counts as in the run)
            rows.append({"kind": kind, "start": end - float(s["process_s"]), "end": end,
                         "in_run": min(float(s["wall_s"]), float(s["process_s"])), "job": str(f.parent)})
    steps = [json.loads(f.read_text()) for f in sorted((root / "logs").glob("**/*.time.json"))]
    for f in sorted([*root.glob("timing/steps_time.jsonl"), *(root / "logs").glob("**/steps_time.jsonl")]):
        steps += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    for t in steps:
        rows.append({"kind": t.get("kind", "analysis"), "start": t["started"], "end": t["ended"], "in_run": 0.0,
                     "job": t["rule"], "cores": t.get("cores")})
    return pd.DataFrame(rows, columns=["kind", "start", "end", "in_run", "job", "cores"])


def last_sitting(j: pd.DataFrame, gap_s: float = GAP_S) -> tuple[pd.DataFrame, int]:
    """The jobs of the last sitting that trained runs (timed jobs only; else the last sitting), and
    how many sittings there were."""
    t = j.dropna(subset=["start", "end"]).sort_values("start")
    if t.empty:
        return t, 0
    sitting, reach, ids = 0, -float("inf"), []
    for start, end in zip(t["start"], t["end"]):
        if start > reach + gap_s:
            sitting += 1
        reach = max(reach, end)
        ids.append(sitting)
    t = t.assign(sitting=ids)
    with_runs = t.loc[t["kind"].isin(RUN_KINDS), "sitting"]
    pick = int(with_runs.max()) if len(with_runs) else sitting
    return t[t["sitting"] == pick], sitting


def account(results: str | Path, cores: int) -> pd.DataFrame:
    """The last sitting's core-time by part, in core-seconds and as a share of cores × span."""
    j = jobs(results)
    s, n_sittings = last_sitting(j)
    untimed = int(j["start"].isna().sum())
    if s.empty:
        return pd.DataFrame([{"part": "no timed jobs (runs made before process_s was recorded)", "core_s": None,
                              "share": None, "jobs": untimed}])
    span = float(s["end"].max() - s["start"].min())
    recorded = pd.to_numeric(s["cores"], errors="coerce").dropna()
    cores_note = "as recorded" if len(recorded) else "this invocation's; the sitting's own not recorded"
    cores = int(recorded.iloc[-1]) if len(recorded) else cores
    runs, steps = s[s["kind"].isin(RUN_KINDS)], s[~s["kind"].isin(RUN_KINDS)]

    def took(kind: str) -> tuple[float, int]:
        k = steps[steps["kind"] == kind]
        return float((k["end"] - k["start"]).sum()), len(k)

    parts = [
        ("inside training runs (training and its evaluations: Σ wall_s)", runs["in_run"].sum(), len(runs)),
        ("run start-up and writing (Σ process_s − wall_s)", (runs["end"] - runs["start"] - runs["in_run"]).sum(),
         len(runs)),
        ("toy experiments (the source's toy problems: C1, C2, C7, C8)", *took("toy")),
        ("analysis steps", *took("analysis")),
    ]
    core_s = cores * span
    rows = [{"part": p, "core_s": round(float(v), 1), "share": round(float(v) / core_s, 4), "jobs": n}
            for p, v, n in parts]
    rest = core_s - sum(r["core_s"] for r in rows)
    rows.append({"part": "the rest: Snakemake, job turnaround, idle cores", "core_s": round(rest, 1),
                 "share": round(rest / core_s, 4), "jobs": None})
    over = core_s - rows[0]["core_s"] - rows[2]["core_s"]
    rows.append({"part": "overhead: start-up, analysis and the rest (issue 17: ≤ 10 %)", "core_s": round(over, 1),
                 "share": round(over / core_s, 4), "jobs": None})
    rows.append({"part": f"cores × span ({cores} × {span:.1f} s, cores {cores_note}; sitting "
                         f"{int(s['sitting'].iloc[0])} of {n_sittings}, {untimed} untimed jobs left out)",
                 "core_s": round(core_s, 1), "share": 1.0, "jobs": len(s)})
    return pd.DataFrame(rows)


def write(results: str | Path, cores: int, csv_path: str, html_path: str) -> None:
    from analysis import html

    t = account(results, cores)
    t.to_csv(csv_path, index=False)
    html.write_page(html_path, "Where the DAG's core-time went", [
        ("The last sitting of this snapshot's jobs (no gap over 2 minutes between them): its training runs' "
         "time against the cores × wall-clock span it occupied. Read from the runs' summary.json and the "
         "analysis steps' timing files; see analysis/dag_time.py.", html.table_html(t)),
    ])
