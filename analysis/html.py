"""Tables as small self-contained HTML pages (the Snakemake report shows HTML inline)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.3em} p{max-width:60em}
table{border-collapse:collapse;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0;position:sticky;top:0}
tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.supported{background:#d4f4d4!important} .not-supported{background:#f8d0d0!important}
.inconclusive{background:#fff3c4!important}
.ok{color:#176317} .failed{color:#a00;font-weight:bold} .missing{color:#a60;font-weight:bold}
"""


def _cell(v: Any) -> tuple[str, str]:
    """(html text, css class) of one value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–", "num"
    if isinstance(v, bool):
        return str(v), ""
    if isinstance(v, int):
        return str(v), "num"
    if isinstance(v, float):
        if math.isinf(v):
            return ("∞" if v > 0 else "−∞"), "num"
        return (f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"), "num"
    s = str(v)
    cls = {
        "supported": "supported",
        "not supported": "not-supported",
        "inconclusive": "inconclusive",
        "inert at this budget": "inconclusive",
        "ok": "ok",
        "failed": "failed",
        "missing": "missing",
    }.get(s, "")
    return html.escape(s), cls


def table_html(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    cols = list(columns or df.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            text, cls = _cell(r[c].item() if hasattr(r[c], "item") else r[c])
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_page(path: str | Path, title: str, sections: Sequence[tuple[str, str]]) -> None:
    """``sections``: (intro html, table html) pairs."""
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for intro, tab in sections:
        parts.append(f"<p>{intro}</p>{tab}")
    parts.append("</body></html>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(parts), encoding="utf-8")


# --- the report's landing page: the verdict table -------------------------------------------------

LANDING_CSS = """
div.items-center.justify-center:has(.ngrl-verdicts){align-items:flex-start!important;justify-content:flex-start!important}
.prose:has(.ngrl-verdicts){max-width:min(80rem,calc(100vw - 26rem))!important}
.ngrl-verdicts table{border-collapse:collapse;font-size:.8rem;line-height:1.25;margin:.4em 0 1em 0}
.ngrl-verdicts th,.ngrl-verdicts td{border:1px solid #ccc;padding:.2em .45em;text-align:left;vertical-align:top}
.ngrl-verdicts th{background:#f0f0f0} .ngrl-verdicts td.num{text-align:right;white-space:nowrap}
.ngrl-verdicts tr.claim td{background:#eef2f7;font-weight:600;border-top:2px solid #888}
.ngrl-verdicts .supported{background:#d4f4d4} .ngrl-verdicts .not-supported{background:#f8d0d0}
.ngrl-verdicts .inconclusive{background:#fff3c4} .ngrl-verdicts .warn{color:#a00;font-weight:600}
.ngrl-verdicts .small{font-size:.72rem;color:#444}
"""
_VERDICT_CLASS = {"supported": "supported", "not supported": "not-supported", "inconclusive": "inconclusive",
                  "inert at this budget": "inconclusive"}
_PAIR = (re.compile(r"P\(([\w.\-]+) > ([\w.\-]+)\)"), re.compile(r"mean difference ([\w.\-]+) − ([\w.\-]+)"))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _g(v: Any) -> str:
    x = _num(v)
    if math.isnan(x):
        return "–"
    return ("∞" if x > 0 else "−∞") if math.isinf(x) else f"{x:.3g}"


def effect_text(effect: Any, lo: Any, hi: Any, test: str) -> str:
    """``effect [lo, hi]`` for a confidence interval; ``effect (range lo – hi)`` where the interval
    is the range of a deterministic toy over its starts/problems; the bare value without interval."""
    e, a, b = _num(effect), _num(lo), _num(hi)
    if math.isnan(a) and math.isnan(b):
        return _g(e)
    if "deterministic" in test or "range" in test:
        return _g(e) if a == b else f"{_g(e)} (range {_g(a)} – {_g(b)})"
    return f"{_g(e)} [{_g(a)}, {_g(b)}]"


def per_env_effects(
    test: str, metric: str, metrics: pd.DataFrame | None, column: str | None = None
) -> dict[str, float]:
    """Point estimate of one comparison part per env, recomputed from the usable runs of
    run_metrics.csv: P(X > Y) = mean over run pairs of 1[x > y] + ½·1[x = y] for a probability of
    improvement, mean(x) − mean(y) for a mean difference; x, y = the part's two algorithms (named by
    its test), the metric column ``column`` (calibration.csv's) or else the first word of its metric.
    Empty when the part is no comparison."""
    if metrics is None or metrics.empty:
        return {}
    word = re.match(r"[a-z_]+", str(metric))
    c = column if isinstance(column, str) and column in metrics else (word.group(0) if word else "")
    m = next((p.search(str(test)) for p in _PAIR if p.search(str(test))), None)
    if not m or c not in metrics:
        return {}
    x, y = m.group(1), m.group(2)
    used = metrics[metrics["used"].astype(str).str.lower() == "true"]
    if "setting" in used:
        used = used[used["setting"].astype(object).where(used["setting"].notna(), "").astype(str) == ""]
    out = {}
    for env, g in used.groupby("env", sort=True):
        vx = g.loc[g["algo"] == x, c].dropna().to_numpy(float)
        vy = g.loc[g["algo"] == y, c].dropna().to_numpy(float)
        if len(vx) == 0 or len(vy) == 0:
            continue
        if m.re is _PAIR[0]:
            d = vx[:, None] - vy[None, :]
            out[str(env)] = float(((d > 0) + 0.5 * (d == 0)).mean())
        else:
            out[str(env)] = float(vx.mean() - vy.mean())
    return out


def verdict_landing(
    claims: pd.DataFrame,
    parts: pd.DataFrame,
    metrics: pd.DataFrame | None = None,
    calibration: pd.DataFrame | None = None,
) -> str:
    """The verdict table of the report's landing page: an HTML fragment (its own scoped style), one
    bold row per claim (statement, overall verdict) then one row per part of it, with the effect and
    its CI, the per-env point estimates, the design's A/A false-verdict rate and minimum detectable
    effect (MDE, from analysis/calibrate.py), the runs used and the reason of any verdict other than
    supported; above it the commit and date of the thresholds and of the runs."""
    r0 = claims.iloc[0] if len(claims) else pd.Series(dtype=object)
    cols_of: dict[tuple[str, str], str] = {}
    if calibration is not None and {"claim", "part", "metric"} <= set(calibration.columns):
        cols_of = {(str(r["claim"]), str(r["part"])): r["metric"] for _, r in calibration.iterrows()}

    def prov(key: str) -> str:
        v = r0.get(key, "")
        return "?" if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == "" else str(v)

    head = (
        f"<p class='small'>Thresholds: <code>experiments/config/claims.yaml</code> at commit "
        f"<code>{html.escape(prov('thresholds_commit'))}</code> ({html.escape(prov('thresholds_date'))}); "
        f"runs from commit <code>{html.escape(prov('runs_commit'))}</code> ({html.escape(prov('runs_date'))})."
        "</p>"
    )
    warn = prov("provenance_warning")
    if warn != "?":
        head += f"<p class='warn'>Warning: {html.escape(warn)}.</p>"
    cols = ["claim / part", "verdict", "effect [95% CI]", "per env", "A/A false-verdict rate", "MDE",
            "runs used", "reason"]  # fmt: skip
    rows = []
    for _, c in claims.iterrows():
        v = str(c["verdict"])
        rows.append(
            f"<tr class='claim'><td colspan='{len(cols)}'>{html.escape(str(c['claim']))} — "
            f"{html.escape(str(c.get('statement', '')))}: <span class='{_VERDICT_CLASS.get(v, '')}'>"
            f"{html.escape(v)}</span></td></tr>"
        )
        for _, p in parts[parts["claim"] == c["claim"]].iterrows():
            pv = str(p["verdict"])
            col = cols_of.get((str(c["claim"]), str(p["part"])))
            env = per_env_effects(str(p.get("test", "")), str(p.get("metric", "")), metrics, col)
            env_txt = "; ".join(f"{html.escape(k)}: {_g(e)}" for k, e in env.items()) or "–"
            reason = _reason(p)
            cells = [
                f"<td>{html.escape(str(p['part']))}<div class='small'>{html.escape(str(p.get('metric', '')))}"
                "</div></td>",
                f"<td class='{_VERDICT_CLASS.get(pv, '')}'>{html.escape(pv)}</td>",
                f"<td class='num'>{html.escape(effect_text(p['effect'], p['ci_low'], p['ci_high'], str(p['test'])))}"
                "</td>",
                f"<td class='small'>{env_txt}</td>",
                f"<td class='num'>{_g(p.get('false_verdict_rate'))}</td>",
                f"<td class='num'>{_g(p.get('mde'))}</td>",
                f"<td class='small'>{html.escape(str(p.get('runs_used', '')))}</td>",
                f"<td class='small'>{html.escape(reason)}</td>",
            ]
            rows.append("<tr class='part'>" + "".join(cells) + "</tr>")
    thead = "".join(f"<th>{html.escape(h)}</th>" for h in cols)
    return (
        f"<meta charset='utf-8'><style>{LANDING_CSS}</style><div class='ngrl-verdicts'>{head}"
        f"{_summary(claims)}<p class='small'>Every part of every claim, with its test's calibration:</p>"
        f"<table><thead><tr>{thead}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _reason(row: pd.Series) -> str:
    """A claim's or part's reason; empty where there is none (NaN in the CSV)."""
    return "" if str(row.get("reason", "nan")) == "nan" else str(row["reason"])


def _summary(claims: pd.DataFrame) -> str:
    """The answer in one screen: one row per claim — its verdict, the headline part's metric and effect
    with its CI (the weakest part where the claim has several) and why it is not supported."""
    rows = []
    for _, c in claims.iterrows():
        v = str(c["verdict"])
        why = _reason(c)
        rows.append(
            f"<tr class='summary'><td><b>{html.escape(str(c['claim']))}</b> {html.escape(str(c.get('statement', '')))}"
            f"</td><td class='{_VERDICT_CLASS.get(v, '')}'>{html.escape(v)}</td>"
            f"<td class='num'>{html.escape(effect_text(c['effect'], c['ci_low'], c['ci_high'], str(c['test'])))}</td>"
            f"<td class='small'>{html.escape(str(c.get('metric', '')))}</td>"
            f"<td class='small'>{html.escape(why[:300] + ('…' if len(why) > 300 else ''))}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("claim", "verdict", "headline effect [95% CI]", "metric",
                                              "reasons"))
    return f"<table class='summary'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
