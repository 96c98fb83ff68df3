"""The smoke matrix through Snakemake's SLURM executor on a real one-node SLURM equals a local run.

Opt-in (excluded by default): ``python -m pytest -m slurm tests/test_slurm.py -x -q``. Needs root:
installs Debian's ``slurm-wlm`` and ``munge`` if missing, starts munged/slurmctld/slurmd on
loopback (tests/slurm_local.py) and stops them afterwards (unless `python tests/slurm_local.py
start` had them up already). The matrix is experiments/config/smoke.yaml restricted to the
algorithms in ``NGRL_SLURM_ALGORITHMS`` (comma-separated; default ``ppo``; ``all``: smoke's own
list); both runs use the same config.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_local import LocalSlurm, SlurmError, install_packages, missing_programs  # noqa: E402

pytestmark = pytest.mark.slurm

IGNORE = shutil.ignore_patterns(".git", ".snakemake", "__pycache__", "runs", "results", ".pytest_cache",
                                "*.egg-info")
# Without an accounting database the executor must read job states from squeue and submit
# without an account; the first status check after 5 s keeps a tiny matrix quick.
NO_ACCOUNTING = ["--slurm-status-command", "squeue", "--slurm-no-account",
                 "--slurm-init-seconds-before-status-checks", "5"]


@pytest.fixture(scope="module")
def slurm():
    if missing_programs():
        if os.geteuid() != 0:
            pytest.skip(f"needs root or an installed SLURM (missing {missing_programs()})")
        install_packages()
    if os.geteuid() != 0:
        pytest.skip("the local SLURM runs its daemons as root")
    etc = Path("/etc/slurm/slurm.conf")
    if etc.exists() and not etc.read_text().startswith("# written by ngrl") \
            and subprocess.run(["sinfo"], capture_output=True).returncode == 0:
        pytest.skip("a real SLURM is configured here (/etc/slurm/slurm.conf); not replacing its config")
    s = LocalSlurm()   # NGRL_SLURM_DIR or /tmp/ngrl-slurm: reused if `slurm_local.py start` left it up
    try:
        s.start()
    except SlurmError as e:
        pytest.fail(str(e))
    yield s
    if not s.reused:
        s.stop()


def make_copy(root, dst, cfg):
    shutil.copytree(root, dst, ignore=IGNORE)
    (dst / "results").mkdir()
    (dst / "matrix.yaml").write_text(yaml.safe_dump(cfg))
    # In these private copies default.yaml is the matrix itself: a Snakefile that loads
    # default.yaml and merges the --configfile into it (as it did before its `if not config`
    # guard) cannot leak default's `steps`, `exclude` or `sweeps` into the smoke matrix.
    (dst / "experiments" / "config" / "default.yaml").write_text(yaml.safe_dump(cfg))
    return dst


def run_dirs(repo):
    runs = repo / "results" / "runs"
    return {p.parent.relative_to(runs) for p in runs.glob("*/*/*/summary.json")}


def test_smoke_matrix_on_slurm_equals_local(slurm, root, tmp_path):
    cfg = yaml.safe_load((root / "experiments/config/smoke.yaml").read_text())
    algos = os.environ.get("NGRL_SLURM_ALGORITHMS", "ppo")
    if algos != "all":
        cfg["algorithms"] = algos.split(",")
    on_slurm = make_copy(root, tmp_path / "slurm", cfg)
    local = make_copy(root, tmp_path / "local", cfg)

    r = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile",
                        "matrix.yaml", *NO_ACCOUNTING], cwd=on_slurm, env=slurm.env(), capture_output=True,
                       text=True, timeout=1800)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", out)
    runs = run_dirs(on_slurm)
    assert runs and sum(rule == "train" for _, rule in submitted) == len(runs), (submitted, runs, out[-3000:])
    # only the runs go to the cluster: aggregation, figures and the report are local rules
    assert {rule for _, rule in submitted} <= {"train", "sweep_run"}, submitted
    assert (on_slurm / "results" / "tables" / "runs.csv").exists()

    r = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2",
                        "--configfile", "matrix.yaml"], cwd=local, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert run_dirs(local) == runs

    for rel in sorted(runs):
        a, b = on_slurm / "results" / "runs" / rel, local / "results" / "runs" / rel
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert sa["status"] == sb["status"] == "ok", (rel, sa.get("error"), sb.get("error"))
        assert sa["final_eval_return"] == sb["final_eval_return"], rel
        ea, eb = (pd.read_csv(d / "eval.csv") for d in (a, b))
        pd.testing.assert_frame_equal(ea, eb, check_exact=True, obj=f"{rel}/eval.csv")
        pa, pb = (pd.read_csv(d / "progress.csv").drop(columns=["wall_s", "train_s"]) for d in (a, b))
        pd.testing.assert_frame_equal(pa, pb, check_exact=True, obj=f"{rel}/progress.csv")
