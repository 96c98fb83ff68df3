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
    # a run resumed in this sitting: 30 s of this process, 500 s of wall_s over its processes
    _run(tmp_path, "runs/npg/E/1", end=1100.0, process_s=30, wall_s=500)
    resumed = dag_time.account(tmp_path, cores=2).set_index("part")
    assert resumed.loc[resumed.index.str.startswith("inside"), "core_s"].item() == pytest.approx(183 + 30)
    assert resumed.loc[resumed.index.str.startswith("run start-up"), "core_s"].item() == pytest.approx(17)
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


def test_a_sitting_is_accounted_with_its_own_recorded_cores(tmp_path):
    """A snapshot made with --cores 2 and redrawn later with --cores 1: the training sitting's dag_time
    step recorded 2, and that is what its core-time is counted with (counted with 1, the runs' time
    would exceed the sitting's core-time: a share above 1)."""
    _run(tmp_path, "runs/ppo/E/0", end=1100.0, process_s=100, wall_s=95)
    _run(tmp_path, "runs/ppo/E/1", end=1100.0, process_s=100, wall_s=95)
    (tmp_path / "timing").mkdir()
    (tmp_path / "timing/steps_time.jsonl").write_text(
        json.dumps({"rule": "dag_time", "started": 1101.0, "ended": 1102.0, "cores": 2}) + "\n"
        + json.dumps({"rule": "dag_time", "started": 5000.0, "ended": 5001.0, "cores": 1}) + "\n")
    t = dag_time.account(tmp_path, cores=1).set_index("part")
    assert t["core_s"].iloc[-1] == pytest.approx(2 * 102.0)
    assert "2 × 102.0 s, cores as recorded" in t.index[-1]
    assert 0 < t.loc[t.index.str.startswith("the rest")]["share"].item() < 1
    (tmp_path / "timing/steps_time.jsonl").write_text(json.dumps({"rule": "x", "started": 1101.0, "ended": 1102.0}))
    t = dag_time.account(tmp_path, cores=2).set_index("part")
    assert "not recorded" in t.index[-1] and t["core_s"].iloc[-1] == pytest.approx(2 * 102.0)


def test_step_time_records_the_cores_where_given(tmp_path):
    from experiments.io import append_step_time

    append_step_time(tmp_path, "dag_time", 1.0, 2.0, cores=4)
    append_step_time(tmp_path, "analysis_tables", 2.0, 3.0)
    a, b = (json.loads(x) for x in (tmp_path / "steps_time.jsonl").read_text().splitlines())
    assert a["cores"] == 4 and "cores" not in b
