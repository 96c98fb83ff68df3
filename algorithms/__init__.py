"""Our implementations of NPG, TRPO, PPO and ACER, plus the SB3 reference adapters."""
