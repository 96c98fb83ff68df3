"""envs.yaml: the suites, the env constructors (train/eval wrappers), validation errors."""
import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from algorithms import registry
from algorithms.base import ConfigError
from experiments.envs import ENVS_YAML, FireReset, ale_kwargs, check_dependencies, load_catalog, make_env
from experiments.matrix import expand, load_config

CATALOG = load_catalog()
ALL_ENVS = [e for s in CATALOG.suites.values() for e in s]
CONFIG_DIR = Path(__file__).resolve().parent.parent / "experiments" / "config"


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    # Some MuJoCo models (HalfCheetah-v5) make mujoco write MUJOCO_LOG.TXT into the cwd.
    monkeypatch.chdir(tmp_path)


def test_suites_hold_the_expected_envs():
    assert CATALOG.suite("classic") == ["CartPole-v1", "Acrobot-v1", "Pendulum-v1",
                                        "MountainCarContinuous-v0"]
    mujoco = ("Hopper", "HalfCheetah", "Walker2d", "Ant", "Swimmer", "InvertedPendulum", "Humanoid")
    assert set(CATALOG.suite("mujoco")) == {f"{n}-v5" for n in mujoco}
    atari = ("Pong", "Breakout", "BeamRider", "Seaquest")
    assert set(CATALOG.suite("atari")) == {f"ALE/{n}-v5" for n in atari}


@pytest.mark.parametrize("env_id", ALL_ENVS)
def test_every_env_has_budgets_eval_and_scores(env_id):
    spec = CATALOG.get(env_id)
    assert spec.budget["smoke"] <= spec.budget["default"] <= spec.budget["paper"]
    assert spec.eval_freq > 0 and spec.eval_episodes > 0
    assert spec.threshold > spec.random_score
    if spec.family == "mujoco":
        assert spec.budget["paper"] == 1_000_000
        assert spec.hyperparams == {"norm_obs": True, "norm_reward": True}
    if spec.family == "atari":
        assert spec.budget["paper"] == 10_000_000


@pytest.mark.parametrize("env_id", ALL_ENVS)
def test_every_env_constructs_and_steps_train_and_eval(env_id):
    spec = CATALOG.get(env_id)
    check_dependencies(spec)
    for train in (True, False):
        env = make_env(spec, train)
        try:
            obs, _ = env.reset(seed=0)
            assert env.observation_space.contains(obs), (env_id, train)
            env.action_space.seed(0)
            for _ in range(5):
                obs, r, term, trunc, _ = env.step(env.action_space.sample())
                assert np.isfinite(r)
                if term or trunc:
                    obs, _ = env.reset()
            assert env.observation_space.contains(obs)
        finally:
            env.close()
        # the innermost wrapper above the raw env is the episode monitor (raw rewards, full episodes)
        inner = env
        while isinstance(inner, gym.Wrapper) and not isinstance(inner, gym.wrappers.RecordEpisodeStatistics):
            inner = inner.env
        assert isinstance(inner, gym.wrappers.RecordEpisodeStatistics)
        below = inner.env
        while isinstance(below, gym.Wrapper):
            assert type(below).__name__ in ("OrderEnforcing", "PassiveEnvChecker", "TimeLimit"), type(below)
            below = below.env


@pytest.mark.parametrize("env_id", CATALOG.suite("atari"))
def test_atari_observations_are_stacked_uint8_frames(env_id):
    spec = CATALOG.get(env_id)
    for train in (True, False):
        env = make_env(spec, train)
        obs, _ = env.reset(seed=1)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
        obs, *_ = env.step(0)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        env.close()


def test_atari_v5_settings_are_stated_and_used():
    spec = CATALOG.get("ALE/Pong-v5")
    kw = ale_kwargs(spec)
    assert kw == {"frameskip": 1, "repeat_action_probability": 0.25, "full_action_space": False,
                  "max_num_frames_per_episode": 108_000}
    raw = yaml.safe_load(ENVS_YAML.read_text())["families"]["atari"]["atari"]
    assert {"repeat_action_probability", "full_action_space", "max_num_frames_per_episode"} <= set(raw)
    env = make_env(spec, train=False)
    assert env.unwrapped._frameskip == 1                   # AtariPreprocessing skips (4, max-pooled)
    assert env.unwrapped.action_space.n == 6               # minimal action set
    env.close()


def test_training_reward_is_clipped_and_eval_reward_is_raw():
    """Same seed, same actions: identical games until the first reward (BeamRider: 44 points)."""
    spec = CATALOG.get("ALE/BeamRider-v5")
    tr, ev = make_env(spec, True), make_env(spec, False)
    o1, _ = tr.reset(seed=3)
    o2, _ = ev.reset(seed=3)
    assert (o1 == o2).all()
    rng = np.random.default_rng(0)
    for _ in range(3000):
        a = int(rng.integers(tr.action_space.n))
        _, r_train, *_ = tr.step(a)
        _, r_eval, t, u, _ = ev.step(a)
        assert not (t or u)
        if r_eval != 0:
            break
    assert r_eval > 1 and r_train == 1.0
    tr.close()
    ev.close()


def test_training_returns_are_full_games_with_raw_score():
    """Episodic life ends *training* episodes at each life loss, but info["episode"] (read by our
    VecEnv and by the SB3 callback) comes only at game over, with the raw, unclipped score."""
    spec = CATALOG.get("ALE/BeamRider-v5")
    env = make_env(spec, True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    clipped, life_losses, info = 0.0, 0, {}
    for _ in range(20_000):
        _, r, term, trunc, info = env.step(int(rng.integers(env.action_space.n)))
        clipped += r
        assert r in (-1.0, 0.0, 1.0)
        if term or trunc:
            if "episode" in info:
                break
            life_losses += 1
            assert env.unwrapped.ale.lives() > 0
            env.reset()
    assert "episode" in info and env.unwrapped.ale.lives() == 0
    assert life_losses == 2                         # 3 lives: 2 life losses, then game over
    assert info["episode"]["r"] > clipped > 0       # raw score (44 per enemy), not the clipped sum
    env.close()


def test_eval_env_does_not_end_on_life_loss():
    spec = CATALOG.get("ALE/Breakout-v5")
    env = make_env(spec, False)
    env.reset(seed=0)
    lives0 = env.unwrapped.ale.lives()
    rng = np.random.default_rng(0)
    for _ in range(5000):
        _, _, term, trunc, info = env.step(int(rng.integers(env.action_space.n)))
        if term or trunc:
            break
    assert env.unwrapped.ale.lives() == 0 < lives0 and "episode" in info
    env.close()


# --- FIRE on reset and the evaluation cap (Mnih et al. 2015: 5 min = 18 000 frames) ---------

def _play_noop(env: gym.Env, max_steps: int, seed: int | None = 0) -> tuple[int, bool, bool, dict]:
    """Plays NOOP (action 0) from reset(seed) until the episode ends or ``max_steps`` agent steps."""
    env.reset(seed=seed)
    term = trunc = False
    info: dict = {}
    for n in range(1, max_steps + 1):
        _, _, term, trunc, info = env.step(0)
        if term or trunc:
            return n, term, trunc, info
    return max_steps, term, trunc, info


def test_breakout_eval_env_fires_so_a_noop_policy_loses_every_life():
    """Breakout waits for FIRE to serve each ball. The eval env fires at reset and after each life
    loss, so a policy that never acts loses all 5 lives (the game ends: terminated, not truncated)
    in a few hundred agent steps, far below the 4 500-step cap; without FIRE the ball is never
    served and the episode runs to the cap."""
    spec = CATALOG.get("ALE/Breakout-v5")
    env = make_env(spec, train=False)
    n, term, trunc, info = _play_noop(env, 1000)
    assert term and not trunc and env.unwrapped.ale.lives() == 0, (n, term, trunc)
    assert info["episode"]["l"] < 18_000 / 10                     # emulator frames
    env.close()


def test_breakout_training_env_fires_after_every_life_loss():
    """Training: FIRE above EpisodicLifeEnv (SB3's AtariWrapper order): each life loss ends the
    training episode and the next reset serves the ball again, so NOOP loses a life per episode."""
    env = make_env(CATALOG.get("ALE/Breakout-v5"), train=True)
    lives = []
    for k in range(5):
        n, term, trunc, _ = _play_noop(env, 300, seed=0 if k == 0 else None)   # later: EpisodicLifeEnv's reset
        assert term and not trunc, (k, n)
        lives.append(env.unwrapped.ale.lives())
    assert lives == [4, 3, 2, 1, 0]
    env.close()


def test_fire_reset_is_sb3s_fire_reset_env():
    """Oracle: SB3's FireResetEnv on the same preprocessed env gives the same observations."""
    from stable_baselines3.common.atari_wrappers import FireResetEnv
    spec = CATALOG.get("ALE/Breakout-v5")

    def base() -> gym.Env:
        return gym.wrappers.AtariPreprocessing(gym.make(spec.id, **ale_kwargs(spec)), noop_max=30)
    ours, sb3 = FireReset(base(), on_life_loss=False), FireResetEnv(base())
    for seed in (0, 1, 2):
        o1, _ = ours.reset(seed=seed)
        o2, _ = sb3.reset(seed=seed)
        np.testing.assert_array_equal(o1, o2)
        for a in (3, 2, 0, 3):
            np.testing.assert_array_equal(ours.step(a)[0], sb3.step(a)[0])
    ours.close()
    sb3.close()


@pytest.mark.parametrize("env_id", CATALOG.suite("atari"))
def test_every_game_of_the_suite_needs_fire_and_gets_it(env_id):
    """The four games' action 1 is FIRE (≥ 3 actions), so with fire_on_reset both envs fire."""
    for train in (True, False):
        env = make_env(CATALOG.get(env_id), train)
        meanings = env.unwrapped.get_action_meanings()
        assert meanings[1] == "FIRE" and len(meanings) >= 3
        layer, found = env, None
        while isinstance(layer, gym.Wrapper):
            if isinstance(layer, FireReset):
                found = layer
            layer = layer.env
        assert found is not None and found.on_life_loss is (not train)
        env.close()


def test_eval_cap_ends_an_episode_that_would_run_longer():
    """Without FIRE, Breakout under NOOP never serves: the eval episode is truncated at
    eval_max_frames = 18 000 emulator frames (≤ 4 500 agent steps of 4 frames; no-op starts
    count), the training env's limit stays the ALE v5's 108 000."""
    spec = CATALOG.get("ALE/Breakout-v5")
    spec = dataclasses.replace(spec, atari={**spec.atari, "fire_on_reset": False})
    env = make_env(spec, train=False)
    n, term, trunc, info = _play_noop(env, 4600)
    assert trunc and not term and env.unwrapped.ale.lives() == 5
    assert info["episode"]["l"] == env.unwrapped.ale.getEpisodeFrameNumber() == 18_000
    assert 18_000 // 4 - 30 <= n <= 18_000 // 4
    env.close()
    assert ale_kwargs(spec)["max_num_frames_per_episode"] == 108_000
    assert ale_kwargs(spec, train=False)["max_num_frames_per_episode"] == 18_000


def test_fire_and_cap_are_read_from_envs_yaml(tmp_path):
    raw = yaml.safe_load(ENVS_YAML.read_text())["families"]["atari"]["atari"]
    assert raw["fire_on_reset"] is True and raw["eval_max_frames"] == 18_000

    def mutate(d):
        d["families"]["atari"]["atari"].update(fire_on_reset=False, eval_max_frames=400)
    spec = load_catalog(_mutated(tmp_path, mutate)).get("ALE/Breakout-v5")
    env = make_env(spec, train=False)
    n, term, trunc, info = _play_noop(env, 200)                  # no FIRE: nothing happens until 400 frames
    assert trunc and not term and info["episode"]["l"] == 400 and n <= 100
    env.close()


def test_summary_records_the_atari_eval_protocol():
    from experiments.envs import eval_protocol
    assert eval_protocol(CATALOG.get("ALE/Pong-v5")) == {"max_frames": 18_000, "fire_on_reset": True}
    assert eval_protocol(CATALOG.get("CartPole-v1")) == {}


# --- errors ---------------------------------------------------------------------------------

def test_unknown_env_and_suite_are_config_errors():
    with pytest.raises(ConfigError, match="unknown env 'Nope-v0'"):
        CATALOG.get("Nope-v0")
    with pytest.raises(ConfigError, match="unknown suite 'bullet'"):
        CATALOG.suite("bullet")


@pytest.mark.parametrize("cfg, message", [
    ({"suites": ["bullet"]}, "unknown suite 'bullet'"),
    ({"envs": ["CartPole-v9"]}, "unknown env 'CartPole-v9'"),
    ({"envs": ["CartPole-v1"], "steps": {"Pong-v5": 10}}, "unknown env 'Pong-v5'"),
    ({"envs": ["CartPole-v1"], "exclude": [{"env": "Hopper-v4"}]}, "unknown env 'Hopper-v4'"),
])
def test_matrix_rejects_unknown_envs_and_suites_before_any_job(cfg, message):
    with pytest.raises(ConfigError, match=message):
        expand({"profile": "smoke", "seeds": [0], "algorithms": ["ppo"], **cfg})


def test_runner_rejects_unknown_env_and_writes_nothing(tmp_path):
    from experiments.runner import execute
    with pytest.raises(ConfigError, match="unknown env"):
        execute("ppo", "NoSuchEnv-v0", 0, 100, tmp_path / "o", progress_bar=False)
    assert not (tmp_path / "o").exists()


def test_env_in_envs_yaml_but_unknown_to_gymnasium(tmp_path):
    data = yaml.safe_load(ENVS_YAML.read_text())
    data["envs"]["ALE/NotAGame-v5"] = dict(data["envs"]["ALE/Pong-v5"])
    data["suites"]["atari"].append("ALE/NotAGame-v5")
    (tmp_path / "envs.yaml").write_text(yaml.safe_dump(data))
    cat = load_catalog(tmp_path / "envs.yaml")
    with pytest.raises(ConfigError, match="gymnasium does not know env 'ALE/NotAGame-v5'"):
        check_dependencies(cat.get("ALE/NotAGame-v5"))


def _mutated(tmp_path, mutate) -> Path:
    data = yaml.safe_load(ENVS_YAML.read_text())
    mutate(data)
    p = tmp_path / "envs.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d["envs"]["Hopper-v5"]["budget"].pop("paper"), "envs/Hopper-v5/budget"),
    (lambda d: d["envs"]["CartPole-v1"]["budget"].update(smoke="lots"), "envs/CartPole-v1/budget/smoke"),
    (lambda d: d["envs"]["CartPole-v1"].update(treshold=1), "envs/CartPole-v1"),
    (lambda d: d["envs"]["Pendulum-v1"].update(actions="box"), "envs/Pendulum-v1/actions"),
    (lambda d: d["envs"]["Pendulum-v1"]["eval"].update(episodes=0), "envs/Pendulum-v1/eval/episodes"),
    (lambda d: d["families"]["atari"]["atari"].update(frame_skp=4), "families/atari/atari"),
    (lambda d: d["families"]["atari"]["atari"].update(repeat_action_probability=2), "families/atari/atari/"
                                                                                    "repeat_action_probability"),
    (lambda d: d["suites"].update(classic=[]), "suites/classic"),
    (lambda d: d.update(extra={}), "<root>"),
])
def test_malformed_envs_yaml_names_the_offending_key_path(tmp_path, mutate, path):
    with pytest.raises(ConfigError) as e:
        load_catalog(_mutated(tmp_path, mutate))
    assert f"at {path}" in str(e.value), str(e.value)


def test_semantic_errors_name_the_key_path(tmp_path):
    with pytest.raises(ConfigError, match="at envs/Hopper-v5/family: unknown family 'mujo'"):
        load_catalog(_mutated(tmp_path, lambda d: d["envs"]["Hopper-v5"].update(family="mujo")))
    with pytest.raises(ConfigError, match="at suites/mujoco/7: env 'Reacher-v5' is not defined"):
        load_catalog(_mutated(tmp_path, lambda d: d["suites"]["mujoco"].append("Reacher-v5")))


def test_duplicate_keys_and_bad_yaml_are_errors(tmp_path):
    text = ENVS_YAML.read_text()
    dup = text.replace("  Acrobot-v1:\n", "  CartPole-v1:\n", 1)
    (tmp_path / "dup.yaml").write_text(dup)
    with pytest.raises(ConfigError, match="duplicate key 'CartPole-v1'"):
        load_catalog(tmp_path / "dup.yaml")
    (tmp_path / "bad.yaml").write_text("envs: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_catalog(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_catalog(tmp_path / "missing.yaml")


# --- profiles ---------------------------------------------------------------------------------

def test_paper_profile_expands_with_the_registered_algorithms():
    cfg = load_config(CONFIG_DIR / "paper.yaml")
    assert cfg["profile"] == "paper" and cfg["seeds"] == list(range(10)) and cfg["suites"] == ["mujoco"]
    wanted = {"ppo", "npg", "trpo", "acer", "acer-no-trunc", "acer-no-tr", "acer-no-retrace",
              "acer-no-replay", "sb3-ppo", "sb3-trpo", "sb3-a2c"}
    assert set(cfg["algorithms"]) == wanted
    present = [a for a in cfg["algorithms"] if a in registry.ALGORITHMS]   # others land in parallel
    assert {"ppo", "sb3-ppo", "sb3-trpo", "sb3-a2c"} <= set(present)
    runs = expand({**cfg, "algorithms": present})
    assert {r.env for r in runs} == set(CATALOG.suite("mujoco"))
    assert {r.steps for r in runs} == {1_000_000}
    assert {r.seed for r in runs} == set(range(10))
    for a in ("ppo", "sb3-ppo", "sb3-trpo", "sb3-a2c"):
        assert sum(r.algo == a for r in runs) == 7 * 10
    atari = expand({**cfg, "algorithms": present, "seeds": [0, 1, 2, 3, 4], "suites": ["atari"]})
    assert {r.steps for r in atari} == {10_000_000} and {r.seed for r in atari} == set(range(5))
    assert len({r.env for r in atari}) == 4


def test_replication_profile_is_what_its_issue_asks_for():
    """Issue 16: Hopper/HalfCheetah/Walker2d at 1M × ≥ 5 seeds for ppo/trpo/npg and their SB3
    references; continuous ACER and its four ablations on Walker2d-v5 only; outputs in the
    committed snapshot."""
    cfg = load_config(CONFIG_DIR / "replication.yaml")
    runs = expand(cfg)
    assert cfg["results"] == "results/snapshot/replication" and len(cfg["seeds"]) >= 5
    assert {r.steps for r in runs} == {1_000_000}
    cells = {(r.algo, r.env) for r in runs}
    for env in ("MinAtar/Breakout-v0", "MinAtar/SpaceInvaders-v0"):      # C5/C6 on Atari-like tasks
        assert {a for a, e in cells if e == env} == {"acer", "acer-no-trunc", "acer-no-tr", "acer-no-retrace",
                                                     "acer-no-replay", "sb3-a2c", "ppo", "sb3-ppo",
                                                     "acktr"}   # issue 19: ACKTR on MinAtar (conv K-FAC)
    cells = {(a, e) for a, e in cells if not e.startswith("MinAtar/")}
    for env in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"):
        assert {("ppo", env), ("trpo", env), ("npg", env), ("sb3-ppo", env), ("sb3-trpo", env), ("acktr", env)} <= cells
    acer = {(a, e) for a, e in cells if a.startswith("acer")}
    assert acer == {(a, "Walker2d-v5") for a in ("acer", "acer-no-trunc", "acer-no-tr",
                                                 "acer-no-retrace", "acer-no-replay")}
    assert all(sum((r.algo, r.env) == c for r in runs) == len(cfg["seeds"]) for c in cells)


# --- MinAtar ------------------------------------------------------------------------------------

def test_minatar_family_has_the_paper_conventions_and_records_them():
    from experiments.envs import eval_protocol, make_env
    for env_id in CATALOG.suite("minatar"):
        spec = CATALOG.get(env_id)
        assert spec.hyperparams["cnn"] == "minatar" and env_id.endswith("-v0")   # full action set
        env = make_env(spec, train=True)
        obs, _ = env.reset(seed=0)
        game = env.unwrapped.game
        assert game.sticky_action_prob == 0.1 and env.spec.kwargs["difficulty_ramping"] is True
        assert env.action_space.n == 6
        c = game.state_shape()[2]
        assert obs.shape == (c, 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1}
        assert np.array_equal(obs, game.state().transpose(2, 0, 1))       # channel-first, same grid
        assert env.spec.max_episode_steps == 10_000
        assert eval_protocol(spec)["minatar"] == {"sticky_action_prob": 0.1, "difficulty_ramping": True,
                                                  "max_episode_steps": 10_000}


def test_minatar_trunk_is_the_papers_network():
    """One 3×3 convolution with 16 channels (stride 1, no padding: 10×10 → 8×8), 128 units, ReLUs;
    inputs taken as they are (0/1, no ÷255); shared by π and V."""
    import torch

    from algorithms.core.nets import ActorCritic, MinAtarCNN
    env = make_env(CATALOG.get("MinAtar/SpaceInvaders-v0"), train=True)
    c = env.observation_space.shape[0]
    net = ActorCritic(env.observation_space, env.action_space, cnn="minatar")
    assert isinstance(net.pi_trunk, MinAtarCNN) and net.v_trunk is net.pi_trunk
    conv, lin = net.pi_trunk.net[0], net.pi_trunk.net[3]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (c, 16, (3, 3), (1, 1))
    assert (lin.in_features, lin.out_features) == (16 * 8 * 8, 128)
    obs = torch.as_tensor(env.reset(seed=0)[0][None])
    x = obs.float()
    expected = torch.relu(lin(torch.relu(conv(x)).flatten(1)))
    assert torch.equal(net.pi_trunk(obs), expected)
