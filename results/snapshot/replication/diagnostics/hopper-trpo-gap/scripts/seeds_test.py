"""The declared test of ../README.md (2026-11-27, 10:29 UTC): ours (trpo) v sb3-trpo on Hopper-v5, seeds
0-4 from the matrix and 5-9 from runs/matrix-{algo}-{seed}. Primary: paired t on the final evaluation
return over seeds 0-9; secondary: one-sided Mann-Whitney (ours lower) on the 300k-500k training return
over seeds 5-9. Run from the repository root."""
import glob
import json
import os

import numpy as np
from cmp import window
from scipy import stats

R = "results/snapshot/replication"
D = f"{R}/diagnostics/hopper-trpo-gap/runs"


def run_dir(algo: str, seed: int) -> str:
    return f"{R}/runs/{algo}/Hopper-v5/{seed}" if seed < 5 else f"{D}/matrix-{algo}-{seed}"


def final(algo: str, seed: int) -> float | None:
    f = f"{run_dir(algo, seed)}/summary.json"
    if not os.path.exists(f):
        return None
    s = json.load(open(f))
    return s["final_eval_return"] if s.get("status") == "ok" else None


def train_window(algo: str, seed: int) -> float | None:
    files = glob.glob(f"{run_dir(algo, seed)}/progress.csv*")
    return window(files[0]) if files else None


if __name__ == "__main__":
    seeds = range(10)
    ours, ref = [final("trpo", s) for s in seeds], [final("sb3-trpo", s) for s in seeds]
    print("final eval, ours:", [round(x) if x is not None else None for x in ours])
    print("final eval, ref: ", [round(x) if x is not None else None for x in ref])
    pairs = [(a, b) for a, b in zip(ours, ref) if a is not None and b is not None]
    if len(pairs) == 10:
        d = np.array([a - b for a, b in pairs])
        t = stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs])
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        print(f"primary: ours - ref {d.mean():.0f} [{d.mean() - half:.0f}, {d.mean() + half:.0f}], "
              f"paired t p = {t.pvalue:.3f} (10 pairs); ours mean {np.mean([a for a, _ in pairs]):.0f}, "
              f"ref mean {np.mean([b for _, b in pairs]):.0f}")
    else:
        print(f"primary: {len(pairs)} of 10 pairs finished, no test")
    w_ours = [train_window("trpo", s) for s in range(5, 10)]
    w_ref = [train_window("sb3-trpo", s) for s in range(5, 10)]
    print("300k-500k training return, seeds 5-9, ours:", w_ours, "ref:", w_ref)
    if None not in w_ours + w_ref:
        u = stats.mannwhitneyu(w_ours, w_ref, alternative="less")
        print(f"secondary: Mann-Whitney U = {u.statistic:.0f}, one-sided p = {u.pvalue:.3f}")
