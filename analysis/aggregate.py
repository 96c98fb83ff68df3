"""Per-run contract files → tidy tables.

* ``runs``    one row per planned run, status ok / failed / missing (never dropped)
* ``curves``  one row per evaluation: algo, variant, env, seed, step, eval return
* ``updates`` one row per policy update: step, training return and every diagnostic column
              the algorithm logged (wide: the union of all algorithms' columns, NaN elsewhere)

A run is named by its registry name (``acer-no-trunc``, ``sb3-ppo``); ``algo_parts`` splits it
into the base algorithm, the implementation (ours or sb3) and the variant (ablation).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ID_COLUMNS = ["algo", "base_algo", "impl", "variant", "env", "seed"]
RUN_COLUMNS = ID_COLUMNS + [
    "setting",
    "status",
    "error",
    "total_steps",
    "steps_done",
    "final_eval_return",
    "n_evals",
    "n_updates",
    "wall_s",
    "train_s",
    "steps_per_second",
    "git_commit",
    "finished_at",
    "versions",
    "machine",
    "run_dir",
]
CURVE_COLUMNS = ID_COLUMNS + ["setting", "status", "step", "train_s", "eval_return", "eval_return_std", "n_episodes"]
UPDATE_BASE = ["update", "step", "wall_s", "episode_return", "episodes"]


def algo_parts(algo: str) -> dict[str, str]:
    """``sb3-ppo`` → (ppo, sb3, full); ``acer-no-trunc`` → (acer, ours, no-trunc)."""
    impl, rest = ("sb3", algo[4:]) if algo.startswith("sb3-") else ("ours", algo)
    base, _, variant = rest.partition("-")
    return {"base_algo": base, "impl": impl, "variant": variant or "full"}


@dataclasses.dataclass(frozen=True)
class RunRef:
    """A run the experiment plan expects, whether or not it produced any file."""

    run_dir: str
    algo: str
    env: str
    seed: int
    total_steps: int | None = None
    setting: str = ""  # sweep runs: "clip_range=0.1__learning_rate=0.001"

    @classmethod
    def from_spec(cls, out_dir: str, spec: Any, setting: str = "") -> RunRef:
        return cls(str(out_dir), spec.algo, spec.env, int(spec.seed), int(spec.steps), setting)


def refs_from_matrix(runs: Mapping[str, Any]) -> list[RunRef]:
    """The Snakefile's ``RUNS`` (out_dir → RunSpec) as a list of references."""
    return [RunRef.from_spec(d, s) for d, s in runs.items()]


def discover_runs(results: str | Path) -> list[RunRef]:
    """Every finished run under ``results/runs`` (for trees without a config; finds no missing run)."""
    refs = []
    for p in sorted(Path(results).glob("runs/*/*/*/summary.json")):
        try:
            s = json.loads(p.read_text())
            refs.append(RunRef(str(p.parent), s["algo"], s["env_id"], int(s["seed"]), s.get("total_steps")))
        except (OSError, ValueError, KeyError):
            refs.append(RunRef(str(p.parent), p.parts[-4], p.parts[-3], int(p.parts[-2])))
    return refs


def _read_summary(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    p = run_dir / "summary.json"
    if not p.exists():
        return None, "no summary.json: the run never finished"
    try:
        return json.loads(p.read_text()), None
    except (OSError, ValueError) as e:
        return None, f"unreadable summary.json: {e}"


def _read_csv(p: Path) -> pd.DataFrame | None:
    """``p``, or ``p.gz`` where only the gzipped copy exists (config ``compress_logs``: the
    replication snapshot's 1M-step runs log ≈ 0.3–1.4 MB of CSV each)."""
    if not p.exists() and p.with_name(p.name + ".gz").exists():
        p = p.with_name(p.name + ".gz")
    if not p.exists() or p.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(p)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


@dataclasses.dataclass
class Tables:
    runs: pd.DataFrame
    curves: pd.DataFrame
    updates: pd.DataFrame


def _machine_text(m: dict | None) -> str:
    """One line for summary.json's ``machine`` (absent in runs made before it was recorded)."""
    if not m:
        return "not recorded"
    return f"{m.get('cpu') or '?'}, {m.get('cpu_count')} cores, torch threads {m.get('torch_threads')}, " \
           f"{m.get('platform') or '?'}"


def collect(refs: Iterable[RunRef], eval_file: str = "eval.csv") -> Tables:
    """Read every referenced run; missing and unreadable runs become rows with that status.
    ``eval_file``: which evaluation stream makes the curves (``j_eval.csv``: claim C3's J(π))."""
    run_rows, curve_parts, update_parts = [], [], []
    for ref in refs:
        d = Path(ref.run_dir)
        ids = {"algo": ref.algo, **algo_parts(ref.algo), "env": ref.env, "seed": ref.seed}
        summary, problem = _read_summary(d)
        ev = _read_csv(d / eval_file)
        prog = _read_csv(d / "progress.csv")
        if summary is None:
            status, error = "missing", problem
        else:
            status = summary.get("status") or "failed"
            error = summary.get("error")
        row = {
            **ids,
            "setting": ref.setting,
            "status": status,
            "error": error,
            "total_steps": (summary or {}).get("total_steps", ref.total_steps),
            "steps_done": (summary or {}).get("steps_done"),
            "final_eval_return": (summary or {}).get("final_eval_return"),
            "n_evals": 0 if ev is None else len(ev),
            "n_updates": 0 if prog is None else len(prog),
            "wall_s": (summary or {}).get("wall_s"),
            "train_s": (summary or {}).get("train_s"),
            "steps_per_second": (summary or {}).get("steps_per_second"),
            "git_commit": (summary or {}).get("git_commit"),
            "finished_at": (summary or {}).get("finished_at"),
            "versions": ", ".join(f"{k} {v}" for k, v in sorted(((summary or {}).get("versions") or {}).items())),
            "machine": _machine_text((summary or {}).get("machine")),
            "run_dir": str(d),
        }
        run_rows.append(row)
        if status == "missing":
            continue  # files of an unfinished run are not results
        if ev is not None and len(ev):
            c = pd.DataFrame(
                {
                    "step": pd.to_numeric(ev["step"], errors="coerce"),
                    # seconds of training before this evaluation (runs made before it was recorded: NaN)
                    "train_s": pd.to_numeric(ev["train_s"], errors="coerce") if "train_s" in ev else np.nan,
                    "eval_return": pd.to_numeric(ev["return_mean"], errors="coerce"),
                    "eval_return_std": pd.to_numeric(ev.get("return_std"), errors="coerce"),
                    "n_episodes": pd.to_numeric(ev.get("n_episodes"), errors="coerce"),
                }
            )
            for k, v in {**ids, "setting": ref.setting, "status": status}.items():
                c[k] = v
            curve_parts.append(c)
        if prog is not None and len(prog):
            u = prog.copy()
            for col in u.columns:
                if u[col].dtype == object:
                    num = pd.to_numeric(u[col], errors="coerce")
                    u[col] = num if num.notna().any() else u[col].astype(str)
            u.insert(0, "update", np.arange(len(u)))
            for k, v in {**ids, "setting": ref.setting, "status": status}.items():
                u[k] = v
            update_parts.append(u)
    runs = pd.DataFrame(run_rows, columns=RUN_COLUMNS)
    curves = pd.concat(curve_parts, ignore_index=True) if curve_parts else pd.DataFrame(columns=CURVE_COLUMNS)
    curves = curves[CURVE_COLUMNS]
    if update_parts:
        updates = pd.concat(update_parts, ignore_index=True)
        lead = ID_COLUMNS + ["setting", "status"] + [c for c in UPDATE_BASE if c in updates.columns]
        updates = updates[lead + [c for c in updates.columns if c not in lead]]
    else:
        updates = pd.DataFrame(columns=ID_COLUMNS + ["setting", "status"] + UPDATE_BASE)
    return Tables(
        runs.sort_values(["env", "algo", "seed"], kind="stable", ignore_index=True),
        curves.sort_values(["env", "algo", "seed", "step"], kind="stable", ignore_index=True),
        updates,
    )


def write_tables(
    t: Tables,
    runs_csv: str | Path,
    curves_parquet: str | Path,
    curves_csv: str | Path,
    updates_parquet: str | Path,
) -> None:
    for p in (runs_csv, curves_parquet, curves_csv, updates_parquet):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    t.runs.to_csv(runs_csv, index=False)
    t.curves.to_parquet(curves_parquet, index=False)
    t.curves.to_csv(curves_csv, index=False)
    upd = t.updates.copy()
    upd.columns = [str(c) for c in upd.columns]
    upd.to_parquet(updates_parquet, index=False)


def clean_setting(s: pd.Series) -> pd.Series:
    """The ``setting`` column as strings, "" for matrix runs (CSV round trips turn "" into NaN)."""
    return s.astype(object).where(s.notna(), "").astype(str)


def is_main(s: pd.Series) -> pd.Series:
    """Rows of matrix runs (not sweep runs), given the ``setting`` column."""
    return clean_setting(s) == ""


def count_status(status: pd.Series) -> dict[str, int]:
    """n_planned / n_ok / n_failed / n_missing of a ``status`` column."""
    return {
        "n_planned": len(status),
        **{f"n_{k}": int((status == k).sum()) for k in ("ok", "failed", "missing")},
    }


def status_counts(runs: pd.DataFrame, by: Sequence[str] = ("env", "algo")) -> pd.DataFrame:
    """Planned / ok / failed / missing runs per group."""
    by = list(by)
    rows = [{**dict(zip(by, k)), **count_status(g["status"])} for k, g in runs.groupby(by, sort=True)]
    return pd.DataFrame(rows, columns=by + ["n_planned", "n_ok", "n_failed", "n_missing"])


def summaries_table(summary_paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: algo, env, seed, status, final return, steps/s, commit (kept for old callers)."""
    rows = []
    for p in summary_paths:
        s = json.loads(Path(p).read_text())
        rows.append(
            {
                k: s.get(k)
                for k in (
                    "algo",
                    "env_id",
                    "seed",
                    "status",
                    "final_eval_return",
                    "total_steps",
                    "steps_done",
                    "wall_s",
                    "steps_per_second",
                    "git_commit",
                    "error",
                )
            }
        )
    return pd.DataFrame(rows)
