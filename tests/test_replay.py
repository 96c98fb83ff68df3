"""ReplayMemory: round trips, FIFO, exact reconstruction of stacked uint8 frames, memory cost."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.core.envs import VecEnv
from algorithms.core.replay import ReplayMemory


def _segment(rng, T, N, obs_shape, A=3, n_finals=2):
    obs = rng.normal(size=(T + 1, N, *obs_shape)).astype(np.float32)
    term = rng.random((T, N)) < 0.1
    end = term | (rng.random((T, N)) < 0.1)
    logp = np.log(rng.dirichlet(np.ones(A), size=(T, N))).astype(np.float32)
    ft, fn = rng.integers(0, T, n_finals), rng.integers(0, N, n_finals)
    fo = rng.normal(size=(n_finals, *obs_shape)).astype(np.float32)
    return dict(
        obs=obs,
        actions=rng.integers(0, A, (T, N)),
        rewards=rng.normal(size=(T, N)).astype(np.float32),
        terminated=term,
        episode_end=end,
        stats={"log_probs": logp},
        finals=(ft, fn, fo),
    )


def _vector_memory(T=5, N=3, slots=3):
    return ReplayMemory(
        T, N, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), slots * T * N, {"log_probs": (3,)}
    )


def test_round_trip_and_finals():
    rng = np.random.default_rng(0)
    mem = _vector_memory()
    segs = [_segment(rng, 5, 3, (4,)) for _ in range(2)]
    for s in segs:
        mem.add(**s)
    assert mem.size == 2 and mem.steps == 2 * 5 * 3
    slots, envs = np.array([1, 0, 1, 1]), np.array([2, 0, 0, 2])
    b = mem.get(slots, envs)
    for j, (s, n) in enumerate(zip(slots, envs)):
        seg = segs[s]
        np.testing.assert_array_equal(b.obs[:, j].numpy(), seg["obs"][:, n])
        np.testing.assert_array_equal(b.actions[:, j].numpy(), seg["actions"][:, n])
        np.testing.assert_array_equal(b.rewards[:, j].numpy(), seg["rewards"][:, n])
        np.testing.assert_array_equal(b.terminated[:, j].numpy(), seg["terminated"][:, n])
        np.testing.assert_array_equal(b.episode_end[:, j].numpy(), seg["episode_end"][:, n])
        np.testing.assert_array_equal(b.stats["log_probs"][:, j].numpy(), seg["stats"]["log_probs"][:, n])
        ft, fn, fo = seg["finals"]
        mine = sorted(
            (int(t), o.tobytes())
            for t, o in zip(b.final_t[b.final_b == j].tolist(), b.final_obs[b.final_b == j].numpy())
        )
        assert mine == sorted((int(t), o.tobytes()) for t, nn, o in zip(ft, fn, fo) if nn == n)


def test_fifo_overwrite_clears_finals():
    rng = np.random.default_rng(1)
    mem = _vector_memory(slots=2)
    segs = [_segment(rng, 5, 3, (4,)) for _ in range(3)]
    segs[2]["finals"] = None
    for s in segs:
        mem.add(**s)
    assert mem.size == 2 and mem.pos == 1
    np.testing.assert_array_equal(
        mem.get([0], [1]).obs[:, 0].numpy(), segs[2]["obs"][:, 1]
    )  # slot 0 = newest
    assert 0 not in mem.finals and 1 in mem.finals
    batch = mem.sample(np.random.default_rng(0))
    assert batch.obs.shape == (6, 3, 4) and batch.rewards.shape == (5, 3)


def test_sample_takes_env_b_from_a_uniform_slot_as_baselines():
    """Baselines' Buffer.get: idx = randint(0, num_in_buffer, nenv), envx = arange(nenv). Every
    trajectory b of a sample is env b's, from a slot drawn uniformly and independently per env."""
    T, N, C = 5, 3, 4
    mem = _vector_memory(T, N, slots=C)
    rng = np.random.default_rng(3)
    segs = [_segment(rng, T, N, (4,)) for _ in range(C)]
    for s in segs:
        mem.add(**s)
    counts = np.zeros((C, N), int)
    for _ in range(400):
        b = mem.sample(rng)
        for j in range(N):
            match = [i for i, s in enumerate(segs) if np.array_equal(b.obs[:, j].numpy(), s["obs"][:, j])]
            assert len(match) == 1  # env j's trajectory of some slot
            counts[match[0], j] += 1
    # 400 draws per env over 4 slots: 100 expected each, sd 8.7
    assert counts.sum(0).tolist() == [400] * N and counts.min() > 60 and counts.max() < 140


def test_sample_is_normalised_with_the_current_statistics():
    """Add a slot of raw data, change the VecEnv's running statistics, sample: the batch is the
    VecNormalize formula applied by hand to the raw arrays with the statistics of that moment."""
    T, N = 5, 3
    mem = ReplayMemory(T, N, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)), T * N,
                       {"mean": (1,), "log_std": (1,)})
    rng = np.random.default_rng(4)
    seg = _segment(rng, T, N, (3,))
    seg["obs"] *= 3.0
    seg.update(actions=rng.normal(size=(T, N, 1)).astype(np.float32),
               stats={"mean": np.zeros((T, N, 1), np.float32), "log_std": np.zeros((T, N, 1), np.float32)})
    mem.add(**seg)
    env = VecEnv([lambda: gym.make("Pendulum-v1")] * 2, seed=0, norm_obs=True, norm_reward=True)
    order = np.argsort(seg["finals"][1], kind="stable")
    got = []
    for _ in range(2):
        for _ in range(30):  # the running statistics move
            env.step(rng.uniform(-2, 2, (2, 1)))
        m, v, rv = env.obs_rms.mean.copy(), env.obs_rms.var.copy(), env.ret_rms.var.copy()
        b = mem.sample(rng, normalizer=env)
        z = lambda o, m=m, v=v: np.clip((o - m) / np.sqrt(v + 1e-8), -10, 10)  # noqa: E731
        np.testing.assert_allclose(b.obs.numpy(), z(seg["obs"]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.rewards.numpy(), np.clip(seg["rewards"] / np.sqrt(rv + 1e-8), -10, 10),
                                   rtol=1e-6, atol=1e-6)
        fb = b.final_b.numpy()
        np.testing.assert_allclose(b.final_obs.numpy()[np.argsort(fb, kind="stable")], z(seg["finals"][2][order]),
                                   rtol=1e-6, atol=1e-6)
        got.append(b.obs.numpy())
    assert not np.allclose(got[0], got[1])  # same raw slot, different statistics
    raw = mem.sample(rng)  # without a normalizer: the raw data
    np.testing.assert_array_equal(raw.obs.numpy(), seg["obs"])
    np.testing.assert_array_equal(raw.rewards.numpy(), seg["rewards"])


def test_state_dict_round_trip_weights_only():
    rng = np.random.default_rng(2)
    mem = _vector_memory()
    for _ in range(2):
        mem.add(**_segment(rng, 5, 3, (4,)))
    buf = io.BytesIO()
    torch.save(mem.state_dict(), buf)
    buf.seek(0)
    other = _vector_memory()
    other.load_state_dict(torch.load(buf, weights_only=True))
    a, b = mem.get([0, 1, 1], [0, 2, 1]), other.get([0, 1, 1], [0, 2, 1])
    for x, y in ((a.obs, b.obs), (a.actions, b.actions), (a.final_obs, b.final_obs), (a.final_t, b.final_t)):
        assert torch.equal(x, y)
    assert (other.pos, other.size) == (mem.pos, mem.size)


# --- uint8 frame stacks ---------------------------------------------------------------


class _FrameEnv(gym.Env):
    """Random 8×8 uint8 frames, episodes of random length 1–6 (terminated or truncated)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (8, 8), np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(1, 7))
        return self.np_random.integers(0, 256, (8, 8), dtype=np.uint8), {}

    def step(self, action):
        self.left -= 1
        end = self.left == 0
        term = end and bool(self.np_random.integers(0, 2))
        return self.np_random.integers(0, 256, (8, 8), dtype=np.uint8), 1.0, term, end and not term, {}


def _stacked_env():
    return gym.wrappers.FrameStackObservation(gym.wrappers.RecordEpisodeStatistics(_FrameEnv()), 4)


def _collect(env, T):
    obs = [env.obs.copy()]
    term, end, finals = [], [], []
    for t in range(T):
        o, _, te, tr = env.step(np.zeros(env.n, np.int64))
        obs.append(o.copy())
        term.append(te)
        end.append(te | tr)
        finals += [(t, i, env.final_obs[i].copy()) for i in np.flatnonzero(tr & ~te)]
    fin = (
        np.array([f[0] for f in finals], np.int64),
        np.array([f[1] for f in finals], np.int64),
        np.stack([f[2] for f in finals]) if finals else np.zeros((0, 4, 8, 8), np.uint8),
    )
    return dict(
        obs=np.stack(obs),
        actions=np.zeros((T, env.n), np.int64),
        rewards=np.ones((T, env.n), np.float32),
        terminated=np.stack(term),
        episode_end=np.stack(end),
        stats={"log_probs": np.zeros((T, env.n, 2), np.float32)},
        finals=fin,
    )


def test_uint8_frames_reconstruct_stacks_exactly():
    T, N = 12, 3
    env = VecEnv([_stacked_env] * N, seed=0)
    mem = ReplayMemory(
        T, N, env.single_observation_space, env.single_action_space, 4 * T * N, {"log_probs": (2,)}
    )
    assert mem.image and mem.frames.shape == (4, N, 4 + T, 8, 8)
    segs = [_collect(env, T) for _ in range(5)]  # 5 segments into 4 slots: one overwrite
    for s in segs:
        mem.add(**s)
    assert sum(s["episode_end"].sum() for s in segs) > 10  # many episode starts inside segments
    for slot, seg in zip([1, 2, 3, 0], segs[1:]):
        b = mem.get(np.full(N, slot), np.arange(N))
        np.testing.assert_array_equal(b.obs.numpy(), seg["obs"])
        assert b.obs.dtype == torch.uint8
        assert len(b.final_t) == len(seg["finals"][0])


class _ShiftAll:
    """A normaliser that would change anything it touched."""

    def normalize_obs(self, obs):
        return obs.astype(np.float32) + 1.0

    def normalize_reward(self, reward):
        return (reward * 0.5).astype(np.float32)


def test_uint8_frames_are_never_normalised():
    T, N = 6, 2
    env = VecEnv([_stacked_env] * N, seed=2)
    mem = ReplayMemory(T, N, env.single_observation_space, env.single_action_space, T * N, {"log_probs": (2,)})
    seg = _collect(env, T)
    mem.add(**seg)
    b = mem.sample(np.random.default_rng(0), normalizer=_ShiftAll())
    assert b.obs.dtype == torch.uint8
    np.testing.assert_array_equal(b.obs.numpy(), seg["obs"])
    np.testing.assert_array_equal(b.rewards.numpy(), 0.5 * seg["rewards"])


def test_inconsistent_stacks_are_refused():
    T, N = 3, 1
    space = gym.spaces.Box(0, 255, (4, 8, 8), np.uint8)
    mem = ReplayMemory(T, N, space, gym.spaces.Discrete(2), 10 * T, {"log_probs": (2,)})
    seg = _collect(VecEnv([_stacked_env], seed=1), T)
    seg["obs"][2, 0, 0] += 1  # an older frame that matches nothing
    with pytest.raises(ValueError, match="neither"):
        mem.add(**seg)


def test_atari_memory_per_million_transitions():
    """(4, 84, 84) uint8 stacks, k = 20, 16 envs: S + k frames per k steps ≈ 1.2 frames/step."""
    mem = ReplayMemory(
        20,
        16,
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        gym.spaces.Discrete(18),
        50 * 20 * 16,
        {"log_probs": (18,)},
    )
    per = mem.bytes_per_transition()
    frame = 84 * 84
    assert 1.2 * frame <= per < 1.2 * frame + 200  # frames + actions, rewards, flags, μ (18 floats)
    assert mem.memory_per_million() == pytest.approx(per * 1e-3)
    assert per < 4 * frame / 3  # vs 4 frames/step for stored stacks


def test_real_atari_pipeline_round_trip():
    """The project's Atari training env (FrameStackObservation of 84×84 frames) stored as frames."""
    pytest.importorskip("ale_py")
    from experiments.envs import env_fns, load_catalog

    spec = load_catalog().get("ALE/Pong-v5")
    T, N = 20, 2
    env = VecEnv(env_fns(spec, N), seed=0)
    mem = ReplayMemory(
        T,
        N,
        env.single_observation_space,
        env.single_action_space,
        2 * T * N,
        {"log_probs": (int(env.single_action_space.n),)},
    )
    seg = _collect(env, T)
    seg["stats"] = {"log_probs": np.zeros((T, N, int(env.single_action_space.n)), np.float32)}
    mem.add(**seg)
    np.testing.assert_array_equal(mem.get(np.zeros(N, int), np.arange(N)).obs.numpy(), seg["obs"])
    env.close()


def test_minatar_grids_are_stored_whole_and_never_normalised():
    """MinAtar observations are uint8 images but not frame stacks (``frame_stacked=False``): the
    memory keeps each grid as it is (no stack compression, whose consistency check they would
    fail), returns it bit for bit and never normalises it."""
    from experiments.envs import load_catalog, make_env

    spec = load_catalog().get("MinAtar/Breakout-v0")
    T, N = 8, 2
    env = VecEnv([lambda: make_env(spec, train=True)] * N, seed=3)
    mem = ReplayMemory(T, N, env.single_observation_space, env.single_action_space, 3 * T * N,
                       {"log_probs": (2,)}, frame_stacked=False)
    assert not mem.image and mem.obs.dtype == np.uint8 and mem.obs.shape == (3, N, T + 1, 4, 10, 10)
    segs = [_collect(env, T) for _ in range(4)]          # 4 segments into 3 slots: one overwrite
    for s in segs:
        mem.add(**s)
    for slot, seg in zip([1, 2, 0], segs[1:]):
        b = mem.get(np.full(N, slot), np.arange(N), normalizer=_ShiftAll())
        assert b.obs.dtype == torch.uint8
        np.testing.assert_array_equal(b.obs.numpy(), seg["obs"])
    with pytest.raises(ValueError, match="neither"):      # the Atari path would refuse them
        ReplayMemory(T, N, env.single_observation_space, env.single_action_space, 3 * T * N,
                     {"log_probs": (2,)}).add(**segs[0])
