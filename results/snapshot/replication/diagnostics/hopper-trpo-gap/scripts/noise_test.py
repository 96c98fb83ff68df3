"""The declared test of ../README.md ("Declared next"): NumPy-sampled v torch-sampled actions, seeds 8-17,
each run's mean training return over 300k-500k env steps, two-sided Mann-Whitney at α = 0.05, reported
as found only with all 10 pairs finished. Run from the repository root."""
import glob

from cmp import D, window  # noqa: I001  (this folder's cmp.py)
from scipy.stats import mannwhitneyu

runs = {k: {int(f.split("-")[-1].split("/")[0]): window(f)
            for f in sorted(glob.glob(f"{D}/{k}-noise-*/progress.csv.gz"))} for k in ("numpy", "torch")}
seeds = [s for s in range(8, 18) if runs["numpy"].get(s) is not None and runs["torch"].get(s) is not None]
x, y = [runs["numpy"][s] for s in seeds], [runs["torch"][s] for s in seeds]
print("pairs finished:", len(seeds), "seeds", seeds)
print("numpy-sampled:", x)
print("torch-sampled:", y)
if len(seeds) >= 2:
    r = mannwhitneyu(x, y, alternative="two-sided")
    print(f"Mann-Whitney U = {r.statistic:.0f}, two-sided p = {r.pvalue:.3f}"
          + ("" if len(seeds) == 10 else " (not all 10 pairs: no finding is reported)"))
