"""The DAG's time accounting (analysis/dag_time.py) on a synthetic snapshot with known numbers."""
import json

import pytest

from analysis import dag_time


def _run(root, rel, end, process_s, wall_s):
    d = root / rel
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"finished_unix": end, "process_s": process_s, "wall_s": wall_s,
                                                "finished_at": "2026-11-26T00:00:00Z"}))


def test_last_sitting_shares(tmp_path):
    # an old sitting (a day earlier), then: two cores, runs 0–100 s and 0–60 s + 60–100 s, analysis 100–110 s
    _run(tmp_path, "runs/ppo/E/0", end=1000.0 - 86400, process_s=50, wall_s=40)
    _run(tmp_path, "runs/ppo/E/1", end=1100.0, process_s=100, wall_s=90)
    _run(tmp_path, "runs/trpo/E/0", end=1060.0, process_s=60, wall_s=55)
    _run(tmp_path, "sweeps/ppo/E/clip_range=0.1/0", end=1100.0, process_s=40, wall_s=38)
    (tmp_path / "logs/analysis").mkdir(parents=True)
    (tmp_path / "timing").mkdir()
    (tmp_path / "timing/steps_time.jsonl").write_text(
        json.dumps({"rule": "a", "started": 1100.0, "ended": 1110.0}) + "\n"
        + json.dumps({"rule": "toy", "kind": "toy", "started": 1070.0, "ended": 1076.0}) + "\n"
        + json.dumps({"rule": "a", "started": 5000.0, "ended": 5003.0}) + "\n")   # a later redraw: its own sitting
    _run(tmp_path, "runs/npg/E/0", end=None, process_s=None, wall_s=5)   # made before process_s existed
    t = dag_time.account(tmp_path, cores=2).set_index("part")
    core_s = 2 * 110.0
    assert t["core_s"].iloc[-1] == pytest.approx(core_s)
    in_runs = t.loc[t.index.str.startswith("inside")]
    assert in_runs["core_s"].item() == pytest.approx(90 + 55 + 38) and in_runs["jobs"].item() == 3
    assert in_runs["share"].item() == pytest.approx(183 / core_s, abs=1e-4)
    startup = t.loc[t.index.str.startswith("run start-up")]["core_s"].item()
    assert startup == pytest.approx(10 + 5 + 2)
    assert t.loc[t.index.str.startswith("analysis")]["core_s"].item() == pytest.approx(10)
    assert t.loc[t.index.str.startswith("toy")]["core_s"].item() == pytest.approx(6)
    assert t["share"].iloc[:5].sum() == pytest.approx(1.0, abs=1e-3)
    over = t.loc[t.index.str.startswith("overhead")]["core_s"].item()
    assert over == pytest.approx(core_s - 183 - 6)
    assert "sitting 2 of 3" in t.index[-1] and "1 untimed" in t.index[-1]


def test_no_timed_jobs_says_so(tmp_path):
    _run(tmp_path, "runs/ppo/E/0", end=None, process_s=None, wall_s=5)
    t = dag_time.account(tmp_path, cores=2)
    assert len(t) == 1 and t["core_s"].isna().all()


def test_timed_records_a_toy_and_keeps_its_status(tmp_path):
    """experiments/timed.py: the command's exit status, and one toy line the accounting reads."""
    import subprocess
    import sys

    rc = subprocess.call([sys.executable, "-m", "experiments.timed", str(tmp_path / "timing"), "toy_x", "--",
                          sys.executable, "-c", "import sys, time; time.sleep(0.2); sys.exit(3)"])
    assert rc == 3
    (line,) = (tmp_path / "timing/steps_time.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["rule"] == "toy_x" and rec["kind"] == "toy" and rec["ended"] - rec["started"] >= 0.2
    j = dag_time.jobs(tmp_path)
    assert list(j["kind"]) == ["toy"]
