"""The HTML report end to end: a synthetic results tree (no training) → the real Snakefile's
analysis rules → `snakemake --report report.html` → opened in headless Chromium, where every
figure must decode and the report's viewer must show one."""

import base64
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import synthetic

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
IGNORE = shutil.ignore_patterns(
    ".git", ".snakemake", "__pycache__", "runs", "results", ".pytest_cache", "*.egg-info"
)
WANTED = ["ppo", "trpo", "npg", "sb3-a2c", "acer", "acer-no-tr", "acer-no-trunc"]
STEPS = 4096


def snakemake(repo, *args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--rerun-triggers", "mtime", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from algorithms import registry

    algos = [a for a in WANTED if a in registry.ALGORITHMS]
    repo = tmp_path_factory.mktemp("report") / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORE)
    res = repo / "results"
    sweep_grids = {"ppo": {"clip_range": [0.1, 0.2]}}
    if "trpo" in algos:
        sweep_grids["trpo"] = {"target_kl": [0.01, 0.02]}
    cfg = {
        "profile": "smoke",
        "seeds": [0, 1, 2],
        "algorithms": algos,
        "envs": ["CartPole-v1"],
        "steps": {"CartPole-v1": STEPS},
        "toys": True,
        "sweeps": {"env": "CartPole-v1", "seeds": [0, 1], "steps": STEPS, **sweep_grids},
        "claims": {"bootstrap": {"n_boot": 300}},
    }
    (repo / "t.yaml").write_text(yaml.safe_dump(cfg))
    synthetic.write_tree(
        res,
        algos=algos,
        envs=["CartPole-v1"],
        seeds=[0, 1, 2],
        steps=STEPS,
        status=lambda a, e, s: "failed" if (a, s) == ("ppo", 2) else "ok",
    )
    synthetic.write_toys(res)
    for algo, grid in sweep_grids.items():
        ((key, values),) = grid.items()
        for i, v in enumerate(values):
            for seed in (0, 1):
                synthetic.write_run(
                    res,
                    synthetic.RunSpec(
                        algo,
                        "CartPole-v1",
                        seed,
                        STEPS,
                        setting={key: v},
                        profile=synthetic.Profile(1.0 - 0.2 * i),
                    ),
                    sub="sweeps",
                )
    r = snakemake(repo, "--configfile", "t.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "rule train" not in r.stdout + r.stderr and "rule sweep_run" not in r.stdout + r.stderr
    r = snakemake(repo, "--configfile", "t.yaml", "--report", "results/report.html")
    assert r.returncode == 0, r.stderr[-5000:]
    return repo, algos


def _embedded_results(report_html: str) -> dict:
    m = re.search(r'<script id="results">\s*var results = (\{.*?\});\s*</script>', report_html, re.S)
    assert m, "no results in the report"
    return json.loads(m.group(1))


def test_report_lists_every_figure_and_table(built):
    repo, algos = built
    report = (repo / "results" / "report.html").read_text()
    results = _embedded_results(report)
    names = {Path(k).name for k in results}
    for f in (
        "learning_curves.png",
        "sample_efficiency.png",
        "acer_ablation.png",
        "monotonic_improvement.png",
        "kl_vs_delta.png",
        "toy_gaussian_ngd_vs_gd.png",
        "toy_npg_vs_pg.png",
        "sweep_robustness.png",
        "claims.html",
        "claims.csv",
        "runs.html",
        "stats.html",
        "poi.html",
        "sweeps.csv",
    ):
        assert f in names, f
    for k, v in results.items():
        assert v["caption"].strip(), f"{k} has no caption"
    for cat in ("1. Claims", "2. Learning curves", "4. Monotonic improvement", "8. Tables and run status"):
        assert cat in report
    # the failed run is listed and counted, the claims table has one verdict per claim
    runs = pd.read_csv(repo / "results" / "tables" / "runs.csv")
    assert len(runs) == 3 * len(algos) and (runs["status"] == "failed").sum() == 1
    claims = pd.read_csv(repo / "results" / "tables" / "claims.csv")
    assert list(claims["claim"]) == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive"}
    runs_page = base64.b64decode(results["results/tables/runs.html"]["data_uri"].split(",", 1)[1]).decode()
    assert "1 failed" in runs_page


PROBE = r"""
<script>
window.addEventListener('load', async () => {
  const out = {imgs: [], tables: [], errors: []};
  try {
    const entries = Object.entries(results);
    for (const [k, v] of entries.filter(([k, v]) => v.mime_type === 'image/png')) {
      const im = new Image();
      const ok = await new Promise(r => {
        im.onload = () => r(true); im.onerror = () => r(false); im.src = v.data_uri;
      });
      out.imgs.push({path: k, ok: ok, w: im.naturalWidth, h: im.naturalHeight});
    }
    for (const [k, v] of entries.filter(([k, v]) => v.mime_type === 'text/html')) {
      const text = await (await fetch(v.data_uri)).text();
      out.tables.push({path: k, rows: (text.match(/<tr>/g) || []).length});
    }
    out.menu = document.querySelector('#app').innerText;
    const first = entries.find(([k, v]) => k.endsWith('learning_curves.png'));
    app.setView({content: 'img', contentPath: first[1].data_uri, resultPath: first[0]});
    await new Promise(r => setTimeout(r, 1000));
    out.shown = [...document.querySelectorAll('#app img')].filter(i => i.src === first[1].data_uri)
                  .map(i => ({w: i.naturalWidth, h: i.naturalHeight}));
  } catch (e) { out.errors.push(String(e)); }
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium(tmp_path, *args):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=30000",
    ]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless Chromium not installed (apt-get install -y chromium)"
)
def test_report_renders_in_chromium(built, tmp_path):
    repo, _ = built
    report = (repo / "results" / "report.html").read_text()
    head, sep, tail = report.rpartition("</body>")  # the probe runs after the report's own scripts
    harness = tmp_path / "harness.html"
    harness.write_text(head + PROBE + sep + tail)
    r = _chromium(tmp_path, "--dump-dom", harness.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the probe did not run: {r.stderr[-2000:]}"
    out = json.loads(html.unescape(m.group(1)))
    assert out["errors"] == []
    assert len(out["imgs"]) >= 8
    for im in out["imgs"]:
        assert im["ok"] and im["w"] > 300 and im["h"] > 150, im
    assert {Path(t["path"]).name for t in out["tables"]} >= {
        "claims.html",
        "runs.html",
        "stats.html",
        "poi.html",
    }
    assert all(t["rows"] > 0 for t in out["tables"]), out["tables"]
    assert "1. Claims" in out["menu"] and "Replication of the seed text" in out["menu"]
    assert out["shown"] and out["shown"][0]["w"] > 300, out["shown"]  # the viewer displays the figure

    # and a screenshot of that view is not blank
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", harness.as_uri())
    assert shot.exists()
    import matplotlib.image

    px = matplotlib.image.imread(str(shot))[..., :3]
    assert px.std() > 0.05 and (px < 0.5).mean() > 0.01  # some dark ink on the page
    assert np.unique((px * 255).astype(int).reshape(-1, 3), axis=0).shape[0] > 50
