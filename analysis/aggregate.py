"""Per-run contract files → tidy pandas tables."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def summaries_table(summary_paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: algo, env, seed, status, final return, steps/s, commit."""
    rows = []
    for p in summary_paths:
        s = json.loads(Path(p).read_text())
        rows.append({k: s.get(k) for k in ("algo", "env_id", "seed", "status", "final_eval_return", "total_steps",
                                          "steps_done", "wall_s", "steps_per_second", "git_commit", "error")})
    return pd.DataFrame(rows)
