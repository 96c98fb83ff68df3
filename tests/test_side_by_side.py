"""analysis/side_by_side.py: two snapshots' claim parts in one table, numbers as the snapshots hold them."""
import pandas as pd
import pytest

from analysis import side_by_side

COLS = ["claim", "part", "verdict", "effect", "ci_low", "ci_high", "false_verdict_rate", "mde"]


def _snapshot(root, name, rows):
    d = root / name / "tables"
    d.mkdir(parents=True)
    pd.DataFrame(rows, columns=COLS).to_csv(d / "claims_parts.csv", index=False)
    return root / name


def test_each_part_once_with_each_snapshots_own_numbers(tmp_path):
    a = _snapshot(tmp_path, "default", [
        ("C3", "fewer drops than ppo", "inconclusive", -0.0146, -0.037, 0.0078, 0.057, 0.073),
        ("C2", "chain-6", "supported", 1e4, 1e4, float("inf"), None, None),
        ("C3", "fewer drops than sb3-a2c", "supported", 0.14, 0.098, 0.181, 0.057, float("inf"))])
    b = _snapshot(tmp_path, "replication", [
        ("C3", "fewer drops than ppo", "inconclusive", 0.0413, -0.00625, 0.088, 0.039, 0.117),
        ("C6", "trust region essential", "not supported", 0.0069, -0.0016, 0.0158, 0.055, 0.29)])
    lines = side_by_side.table([a, b]).splitlines()
    assert lines[0] == "| claim | part | default | replication |"
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in lines[2:]}
    assert len(rows) == len(lines) - 2 == 4                          # the union of parts, each once
    assert [k[0] for k in rows] == sorted(k[0] for k in rows)          # grouped by claim
    ppo = rows[("C3", "fewer drops than ppo")]
    assert "inconclusive, −0.0146 [−0.037, 0.0078]; A/A 0.057, MDE 0.073" in ppo
    assert "inconclusive, 0.0413 [−0.00625, 0.088]; A/A 0.039, MDE 0.117" in ppo
    assert "A/A 0.057, MDE ∞" in rows[("C3", "fewer drops than sb3-a2c")]   # no shift can make it significant
    assert rows[("C3", "fewer drops than sb3-a2c")].endswith("| – |")   # no runs for it in the second
    assert rows[("C6", "trust region essential")].split("|")[3].strip() == "–"
    assert "supported, 1e+04 [1e+04, ∞]" in rows[("C2", "chain-6")]     # open interval; no rate: none shown
    only = side_by_side.table([a, b], ["C3"]).splitlines()[2:]
    assert len(only) == 2 and all(line.startswith("| C3 |") for line in only)


def test_a_snapshot_without_its_analysis_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        side_by_side.main([str(tmp_path / "empty")])
    assert "is its analysis drawn" in capsys.readouterr().err
