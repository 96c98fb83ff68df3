"""Mean training-episode return over env steps 300k-500k, per run, for each group (../README.md).
Run from the repository root."""
import glob

import pandas as pd

R = "results/snapshot/replication"
D = f"{R}/diagnostics/hopper-trpo-gap/runs"


def window(f: str, lo: int = 300_000, hi: int = 500_000) -> float | None:
    p = pd.read_csv(f)
    w = p[(p.step > lo) & (p.step <= hi)]
    return round(w.episode_return.mean()) if len(w) and p.step.max() >= hi else None


GROUPS = {
    "ours, superseded (void/)": f"{R}/void/superseded-mixed-commits/trpo-Hopper-v5/*/progress.csv.gz",
    "ours trpo, remade": f"{R}/runs/trpo/Hopper-v5/*/progress.csv.gz",
    "ours npg, remade": f"{R}/runs/npg/Hopper-v5/*/progress.csv.gz",
    "sb3-trpo (corrected)": f"{R}/runs/sb3-trpo/Hopper-v5/*/progress.csv.gz",
    "sb3-trpo as shipped (void/)": f"{R}/void/sb3-trpo-kl-mean/Hopper-v5/*/progress.csv.gz",
    "ours, torch-sampled actions": f"{D}/torch-noise-*/progress.csv.gz",
    "ours, sb3-contrib's initial weights": f"{D}/sb3-init-*/progress.csv.gz",
}
if __name__ == "__main__":
    for k, pat in GROUPS.items():
        print(f"{k:38s}", [window(f) for f in sorted(glob.glob(pat))])
