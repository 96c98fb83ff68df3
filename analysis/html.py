"""Tables as small self-contained HTML pages (the Snakemake report shows HTML inline)."""

from __future__ import annotations

import html
import math
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
