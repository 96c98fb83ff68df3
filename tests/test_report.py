"""The HTML report end to end: a synthetic results tree (no training) → the real Snakefile's
analysis rules → `snakemake --report report.html` → opened in headless Chromium, where the
landing page must show the verdict table, every figure must decode and the report's viewer must
show one. The landing page's screenshot is kept as a test artefact (``NGRL_TEST_ARTIFACTS``,
default results/ci-artifacts/). `.ci/run` installs Chromium and sets NGRL_REQUIRE_CHROMIUM=1, so
that there a missing browser fails the test instead of skipping it."""

import base64
import html
import json
import os
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
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
REQUIRE_CHROMIUM = os.environ.get("NGRL_REQUIRE_CHROMIUM") == "1"
ARTIFACTS = Path(os.environ.get("NGRL_TEST_ARTIFACTS") or ROOT / "results" / "ci-artifacts")
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
        "aggregate_iqm_poi.png",
        "acer_ablation.png",
        "monotonic_improvement.png",
        "kl_vs_delta.png",
        "toy_gaussian_ngd_vs_gd.png",
        "toy_npg_vs_pg.png",
        "sweep_robustness.png",
        "claims.html",
        "verdicts.html",
        "hyperparams.html",
        "claims.csv",
        "runs.html",
        "stats.html",
        "poi.html",
        "sweeps.csv",
    ):
        assert f in names, f
    for k, v in results.items():
        assert v["caption"].strip(), f"{k} has no caption"
    cats = ("0. Verdicts and what ran", "1. Claims", "2. Learning curves", "4. Monotonic improvement",
            "8. Tables and run status")
    for cat in cats:
        assert cat in report
    # the failed run is listed and counted, the claims table has one verdict per claim
    runs = pd.read_csv(repo / "results" / "tables" / "runs.csv")
    assert len(runs) == 3 * len(algos) and (runs["status"] == "failed").sum() == 1
    claims = pd.read_csv(repo / "results" / "tables" / "claims.csv")
    assert list(claims["claim"]) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"]
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive"}
    runs_page = base64.b64decode(results["results/tables/runs.html"]["data_uri"].split(",", 1)[1]).decode()
    assert "1 failed" in runs_page


PROBE = r"""
<script>
window.addEventListener('load', async () => {
  const out = {imgs: [], tables: [], errors: []};
  try {
    for (let i = 0; i < 50 && !document.querySelector('#app .ngrl-verdicts'); i++)
      await new Promise(r => setTimeout(r, 100));  // React renders the landing page after load
    const v = document.querySelector('#app .ngrl-verdicts');
    out.landing = v ? {
      summary: [...v.querySelectorAll('tr.summary')].map(t => [...t.cells].map(c => c.innerText)),
      claims: [...v.querySelectorAll('tr.claim')].map(t => t.innerText),
      parts: [...v.querySelectorAll('tr.part')].map(t => [...t.cells].map(c => c.innerText)),
      head: [...v.querySelectorAll('th')].map(t => t.innerText),
      width: v.getBoundingClientRect().width,
    } : null;
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


def test_report_renders_in_chromium(built, tmp_path):
    if not CHROMIUM.exists():
        msg = "headless Chromium not installed (apt-get install -y chromium)"
        pytest.fail(msg) if REQUIRE_CHROMIUM else pytest.skip(msg)
    repo, _ = built
    report = (repo / "results" / "report.html").read_text()
    head, sep, tail = report.rpartition("</body>")  # the probe runs after the report's own scripts
    harness = tmp_path / "harness.html"
    harness.write_text(head + PROBE + sep + tail)
    r = _chromium(tmp_path, "--window-size=1600,1000", "--dump-dom", harness.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the probe did not run: {r.stderr[-2000:]}"
    out = json.loads(html.unescape(m.group(1)))
    assert out["errors"] == []
    # the landing page is the answer: one bold row per claim with its verdict, one row per part
    claims = pd.read_csv(repo / "results" / "tables" / "claims.csv")
    parts = pd.read_csv(repo / "results" / "tables" / "claims_parts.csv")
    land = out["landing"]
    assert land, "no verdict table on the landing page"
    assert len(land["claims"]) == len(claims) and len(land["parts"]) == len(parts)
    assert len(land["summary"]) == len(claims)                      # first, one line per claim
    for cells, (_, c) in zip(land["summary"], claims.iterrows()):
        assert cells[0].startswith(c["claim"]) and cells[1] == c["verdict"], cells
    for text, (_, c) in zip(land["claims"], claims.iterrows()):
        assert text.startswith(c["claim"]) and text.rstrip().endswith(c["verdict"]), text
    for cells, (_, p) in zip(land["parts"], parts.iterrows()):
        assert cells[0].startswith(p["part"]) and cells[1] == p["verdict"], cells
    assert {"A/A false-verdict rate", "MDE", "per env", "runs used"} <= set(land["head"])
    assert land["width"] > 700, land  # widened beyond Snakemake's narrow description column
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

    # and a screenshot of the landing page, as a user opens the report, is not blank: kept as an artefact
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_landing.png"
    shot.unlink(missing_ok=True)
    _chromium(tmp_path, "--window-size=1600,1000", f"--screenshot={shot}", (repo / "results" / "report.html").as_uri())
    assert shot.exists()
    print(f"landing-page screenshot: {shot}")
    import matplotlib.image

    px = matplotlib.image.imread(str(shot))[..., :3]
    assert px.std() > 0.05 and (px < 0.5).mean() > 0.01  # some dark ink on the page
    assert np.unique((px * 255).astype(int).reshape(-1, 3), axis=0).shape[0] > 50


def test_per_env_effects_recomputes_poi_and_mean_difference_by_hand():
    """P(X > Y) = mean over the 3×3 run pairs of 1[x > y] + ½·1[x = y], by enumeration; the mean
    difference by hand; sweep runs and unusable runs are left out; a part that is no comparison
    (no 'P(x > y)' / 'mean difference x − y' in its test) has none."""
    from analysis.html import effect_text, per_env_effects

    rows = [("A", "a", v) for v in (1.0, 2.0, 3.0)] + [("A", "b", v) for v in (2.0, 2.0, 0.0)]
    rows += [("B", "a", 5.0), ("B", "b", 1.0), ("B", "b", 3.0)]
    m = pd.DataFrame(rows, columns=["env", "algo", "auc_norm"]).assign(used=True, setting="")
    noise = pd.DataFrame(
        [("A", "a", 99.0, False, ""), ("A", "b", -99.0, True, "clip_range=0.1")],
        columns=["env", "algo", "auc_norm", "used", "setting"],
    )
    m = pd.concat([m, noise], ignore_index=True)
    # env A: x=1 beats 0 (1); x=2 ties 2,2 and beats 0 (½+½+1); x=3 beats all (3) → 6/9
    poi = per_env_effects("probability of improvement P(a > b), permutation test", "auc_norm (AUC)", m)
    assert poi == pytest.approx({"A": 6 / 9, "B": 1.0})
    diff = per_env_effects("mean difference a − b, permutation test", "what was measured", m, column="auc_norm")
    assert diff == pytest.approx({"A": 2.0 - 4 / 3, "B": 5.0 - 2.0})
    assert per_env_effects("every accepted update: KL ≤ δ", "max over updates of KL / δ", m) == {}
    assert effect_text(0.5, 0.1, 0.9, "permutation") == "0.5 [0.1, 0.9]"
    toy = "deterministic toy; interval = range over starts"
    assert effect_text(31.8, 31.8, 434.0, toy) == "31.8 (range 31.8 – 434)"
    assert effect_text(0.998, float("nan"), float("nan"), "every update") == "0.998"
