"""The small shared core every algorithm reuses: vector envs with normalisation, GAE,
rollout storage, networks and action distributions."""
