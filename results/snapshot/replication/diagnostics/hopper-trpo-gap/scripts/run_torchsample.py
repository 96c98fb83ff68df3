"""Ours (``python -m experiments.run`` arguments) with the rollout's actions sampled by torch,
``policy.dist(obs).sample()``, instead of the NumPy actor (algorithms/core/fast.py): bisects the
ours-v-sb3-contrib Hopper-v5 gap on the source of the action noise (../README.md)."""
import sys

from algorithms.core import fast
from experiments.run import main

fast.NumpyActor.supports = staticmethod(lambda policy: False)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
