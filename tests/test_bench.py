"""The throughput bench: paired repeats summarised as medians of within-repeat ratios, goals checked."""
from __future__ import annotations

import csv

import pytest

from experiments import bench
from experiments.runner import machine_info


def test_summarise_takes_medians_of_paired_ratios_and_checks_goals():
    reps = [{"ours": 600.0, "ref": 100.0, "raw": 1000.0},   # ratio 6, of_raw 0.6
            {"ours": 300.0, "ref": 100.0, "raw": 1000.0},   # ratio 3, of_raw 0.3
            {"ours": 400.0, "ref": 50.0, "raw": 500.0}]     # ratio 8, of_raw 0.8
    row = bench.summarise("CartPole-v1", "ppo", "sb3-ppo", reps)
    # the median of the paired ratios (6), not the ratio of the medians (400 / 100 = 4)
    assert row["ratio"] == 6.0 and row["ratio_range"] == "3.00–8.00"
    assert row["steps_per_s"] == 400.0 and row["of_raw"] == 0.6
    assert row["goal"] == "ratio≥5" and row["met"] is True
    row = bench.summarise("Hopper-v5", "ppo", "sb3-ppo", reps)        # ratio ≥ 3 and of_raw ≥ 0.65
    assert row["goal"] == "ratio≥3 of_raw≥0.65" and row["met"] is False
    row = bench.summarise("Pendulum-v1", "acer", None, reps)           # no goal, no reference
    assert row["met"] == "" and "ratio" not in row


def test_bench_writes_its_table(tmp_path):
    out = tmp_path / "t.csv"
    bench.main(["--envs", "CartPole-v1", "--steps", "300", "--repeats", "2", "--algos", "trpo",
                "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert [r["algo"] for r in rows] == ["random actions (raw env)", "trpo"]
    assert rows[1]["reference"] == "sb3-trpo" and rows[1]["repeats"] == "2" and rows[1]["met"] in ("True", "False")
    assert float(rows[1]["ratio"]) > 0 and float(rows[0]["steps_per_s"]) > 0
    meta = out.with_suffix(".meta").read_text()
    assert "repeats=2" in meta and f"cpu={machine_info()['cpu'].replace(' ', '_')}" in meta   # ratios are per CPU


def test_bench_refuses_zero_repeats(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0", "--out", str(tmp_path / "t.csv")])


@pytest.mark.parametrize("module", ["experiments.bench", "experiments.run"])
def test_entry_points_pin_blas_to_one_thread_before_numpy_loads(module):
    """One thread per job for NumPy's BLAS as for torch (ACER's update is NumPy products): the entry points set
    OMP/OpenBLAS/MKL threads to 1 before NumPy is imported, and leave a value the user set alone."""
    import os
    import subprocess
    import sys

    code = (f"import {module}, os, sys; sys.stdout.write(' '.join(os.environ[v] for v in "
            "('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')))")
    from pathlib import Path

    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    run = lambda env: subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1],  # noqa: E731
                                     capture_output=True, text=True, check=True).stdout
    assert run(clean) == "1 1 1"
    assert run({**clean, "OPENBLAS_NUM_THREADS": "2"}) == "1 2 1"
