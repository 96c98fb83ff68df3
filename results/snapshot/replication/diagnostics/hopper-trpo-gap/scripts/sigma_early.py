"""σ of ours and of the reference after updates 5, 10 and 25 (51 200 steps, 8 fresh seeds each), with a
Mann-Whitney test per update (../README.md). Run from the repository root."""
import glob

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

D = "results/snapshot/replication/diagnostics/hopper-trpo-gap/runs"


def sigma(p: pd.DataFrame) -> pd.Series:
    """The reference logs mean σ; ours the entropy Σ_d (log σ_d + ½ log 2πe), d = 3: its geometric mean σ."""
    return p["std"] if "std" in p else np.exp((p.entropy - 3 * 0.5 * np.log(2 * np.pi * np.e)) / 3)


res = {}
for a in ("trpo", "sb3-trpo"):
    rows = [[sigma(p).iloc[i] for i in (4, 9, 24)]
            for p in (pd.read_csv(f) for f in sorted(glob.glob(f"{D}/sigma-{a}-*/progress.csv.gz")))]
    res[a] = np.array(rows)
    print(a, len(rows), np.round(res[a], 3).tolist())
for j, name in enumerate(("update 5", "update 10", "update 25")):
    print(name, "means", res["trpo"][:, j].mean().round(3), res["sb3-trpo"][:, j].mean().round(3),
          "Mann-Whitney p", round(mannwhitneyu(res["trpo"][:, j], res["sb3-trpo"][:, j]).pvalue, 2))
