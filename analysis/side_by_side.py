"""Two snapshots' verdicts side by side, one row per claim part: what the README's results show.

    python -m analysis.side_by_side results/snapshot/default results/snapshot/replication [--claims C3 C4 C5 C6]

Reads each snapshot's ``tables/claims_parts.csv`` (written by ``analysis/claims.py``) and prints a
Markdown table: claim, part, then for each snapshot its verdict, effect [95 % CI], the A/A
false-verdict rate of its design and its minimum detectable effect (80 % power). A part missing
from one snapshot (its matrix has no runs for it) shows "–". Nothing is recomputed: the numbers
are the snapshots' own.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd


def _num(x: object) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.3g}".replace("-", "−")


def cell(row: pd.Series | None) -> str:
    """'verdict, effect [lo, hi]; A/A f' for one part of one snapshot."""
    if row is None:
        return "–"
    text = f"{row['verdict']}, {_num(row['effect'])}"
    if _num(row["ci_low"]) != "–" and _num(row["ci_high"]) != "–" and row["ci_low"] != row["ci_high"]:
        text += f" [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
    if _num(row.get("false_verdict_rate")) != "–":
        text += f"; A/A {_num(row['false_verdict_rate'])}"
    if _num(row.get("mde")) != "–":
        text += f", MDE {_num(row['mde'])}"
    return text


def table(snapshots: list[Path], claims: list[str] | None = None) -> str:
    parts = [pd.read_csv(s / "tables" / "claims_parts.csv") for s in snapshots]
    if claims:
        parts = [p[p["claim"].isin(claims)] for p in parts]
    keys: list[tuple[str, str]] = []
    for p in parts:
        keys += [k for k in zip(p["claim"], p["part"]) if k not in keys]
    index = [{(r["claim"], r["part"]): r for _, r in p.iterrows()} for p in parts]
    head = "| claim | part | " + " | ".join(s.name for s in snapshots) + " |"
    lines = [head, "|" + "---|" * (2 + len(snapshots))]
    for c, q in sorted(keys, key=lambda k: (k[0], keys.index(k))):
        lines.append(f"| {c} | {q} | " + " | ".join(cell(ix.get((c, q))) for ix in index) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.side_by_side", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshots", nargs="+", type=Path, help="snapshot directories (each with tables/claims_parts.csv)")
    p.add_argument("--claims", nargs="+", help="only these claims (e.g. C3 C4 C5 C6)")
    a = p.parse_args(argv)
    missing = [s for s in a.snapshots if not (s / "tables" / "claims_parts.csv").is_file()]
    if missing:
        p.error("no tables/claims_parts.csv in " + ", ".join(map(str, missing)) + " (is its analysis drawn?)")
    print(table(a.snapshots, a.claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
