"""The runner (one run = one process), configuration loading and validation, benchmarks."""
