"""The declarative list of the claims' two-algorithm comparisons (``claims.yaml: comparisons``).

One entry per verdict part: which algorithms (x against y), which per-run metric, which statistic
(``diff``: mean x − y; ``poi``: P(x > y)), which data (``main``: tables/run_metrics.csv;
``monotonic``: claim C3's true-objective runs), the thresholds, and the ablations whose mechanism
must act (``active``, claim C6). ``analysis/claims.py::judge_comparison`` judges every entry and
``analysis/calibrate.py`` simulates every entry's design: both read this one list.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from algorithms.base import ConfigError

FIELDS = {"claim", "part", "x", "y", "metric", "stat", "data", "support_above", "refute_below", "active", "label"}


@dataclass(frozen=True)
class Comparison:
    claim: str
    part: str
    x: str
    y: str
    metric: str
    stat: str = "diff"                 # "diff" | "poi"
    support_above: float = 0.0
    refute_below: float = 0.0
    data: str = "main"                 # "main" | "monotonic"
    active: tuple[str, ...] = field(default_factory=tuple)
    label: str = ""


def comparisons(cfg: Mapping[str, Any], claim: str | None = None) -> list[Comparison]:
    """The entries of ``cfg["comparisons"]`` (optionally of one claim), validated."""
    out = []
    for i, e in enumerate(cfg.get("comparisons", []) or []):
        where = f"claims.yaml comparisons[{i}]"
        if not isinstance(e, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {e!r}")
        unknown = set(e) - FIELDS
        missing = {"claim", "part", "x", "y", "metric"} - set(e)
        if unknown or missing:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
                              f"known: {sorted(FIELDS)}")
        if e.get("stat", "diff") not in ("diff", "poi") or e.get("data", "main") not in ("main", "monotonic"):
            raise ConfigError(f"{where}: stat must be diff or poi, data main or monotonic")
        c = Comparison(str(e["claim"]), str(e["part"]), str(e["x"]), str(e["y"]), str(e["metric"]),
                       e.get("stat", "diff"), float(e.get("support_above", 0.0)), float(e.get("refute_below", 0.0)),
                       e.get("data", "main"), tuple(e.get("active", []) or []), str(e.get("label", "")))
        if claim is None or c.claim == claim:
            out.append(c)
    parts = [(c.claim, c.part) for c in out]
    if len(parts) != len(set(parts)):
        raise ConfigError("claims.yaml comparisons: two entries share a claim and part name")
    return out
