"""Deterministic toy experiments of the seed text (numpy only, no gym, no RNG).

* ``gaussian_manifold``: §4.5.1, fitting N(μ, σ) by gradient descent and by natural gradient
  descent with the exact Fisher metric, from a small and from a large σ.
* ``npg_vs_pg``: §4.5.2, Kakade's (2001) comparison of the natural and the vanilla policy
  gradient, with exact gradients and Fisher matrices on a small MDP.

Each is a module runnable as ``python -m experiments.toys.NAME --out DIR``, writing CSVs.
"""
