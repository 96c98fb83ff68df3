#!/bin/bash
# The diagnostic runs of ../README.md, from the repository root:
#   bash results/snapshot/replication/diagnostics/hopper-trpo-gap/scripts/run_all.sh
# Writes runs/<name>-<seed>/ beside this folder (summary.json, eval.csv, progress.csv).
set -e
D=results/snapshot/replication/diagnostics/hopper-trpo-gap
S=$D/scripts
run() { OMP_NUM_THREADS=1 PYTHONPATH=. python "$@" --no-progress; }
# 1. sigma in the first 25 updates: ours v the reference, 8 fresh seeds each, 51 200 steps, no evaluation
for s in 10 11 12 13 14 15 16 17; do for a in trpo sb3-trpo; do
  run -m experiments.run --algo $a --env Hopper-v5 --seed $s --steps 51200 --out $D/runs/sigma-$a-$s --eval-freq 10000000 --eval-episodes 1
done; done
# 2. ours with the rollout's actions sampled by torch instead of the NumPy actor, 500k steps
for s in 0 1 2 3 4 5 6 7; do run $S/run_torchsample.py --algo trpo --env Hopper-v5 --seed $s --steps 500000 --out $D/runs/torch-noise-$s --eval-episodes 5; done
# 3. ours from sb3-contrib's own initial weights for the seed, 500k steps
for s in 0 1 2 3; do run $S/run_sb3init.py --algo trpo --env Hopper-v5 --seed $s --steps 500000 --out $D/runs/sb3-init-$s --eval-episodes 5; done
