"""ACER: Retrace vs the seed's direct sum, bias correction vs its expectation, the trust-region
projection, the averaged network, one-component ablations, checkpoints, short runs."""

from __future__ import annotations

import copy
import dataclasses
import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from algorithms import registry
from algorithms.acer import ACER, ACERConfig, DiscreteACERNet, discrete_terms
from algorithms.acer_continuous import SDNet, continuous_terms
from algorithms.core.acer_ops import average_, retrace, trust_region
from algorithms.core.envs import VecEnv
from algorithms.core.replay import Trajectory
from experiments.envs import env_fns, load_catalog
from experiments.runner import execute

DIAGNOSTICS = (
    "mean_rho",
    "frac_truncated",
    "k_norm",
    "tr_active_frac",
    "tr_shrink",
    "tr_effect",
    "kl_avg",
    "q_loss",
    "entropy",
    "pg_loss",
    "replay",
    "learning_rate",
)


class FakeRun:
    def __init__(self, env_id: str, total_steps: int = 1000, seed: int = 0):
        self.spec, self.total_steps, self.seed, self.env_id = (
            load_catalog().get(env_id),
            total_steps,
            seed,
            env_id,
        )
        self.device, self.rows = torch.device("cpu"), []

    def make_env(self, n_envs, *, gamma=0.99, norm_obs=False, norm_reward=False):
        return VecEnv(
            env_fns(self.spec, n_envs),
            seed=self.seed,
            norm_obs=norm_obs,
            norm_reward=norm_reward,
            gamma=gamma,
        )

    def log_update(self, step, diagnostics):
        self.rows.append({"step": step, **diagnostics})


# --- Retrace ---------------------------------------------------------------------------


def direct_sum(r, q, nv, c, term, end, gamma):
    """The seed's Q^ret_t = Q(s_t,a_t) + Σ_{t'≥t} γ^{t'−t} (Π_{s=t+1}^{t'} c_s) δ_{t'}, in ACER's form
    δ_{t'} = r_{t'} + γ V(s_{t'+1}) − Q(s_{t'}, a_{t'}) (V = 0 after a termination); the sum stops
    at the end of the episode."""
    T, N = r.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, prod = q[t, n], 1.0
            for tp in range(t, T):
                if tp > t:
                    prod *= c[tp, n]
                delta = r[tp, n] + gamma * (0.0 if term[tp, n] else nv[tp, n]) - q[tp, n]
                total += gamma ** (tp - t) * prod * delta
                if end[tp, n]:
                    break
            out[t, n] = total
    return out


def test_retrace_equals_direct_sum_with_terminals_and_truncations():
    rng = np.random.default_rng(0)
    T, N, gamma = 9, 6, 0.9
    r, q, nv = rng.normal(size=(3, T, N))
    c = rng.uniform(0, 1, (T, N))
    term = rng.random((T, N)) < 0.15
    end = term | (rng.random((T, N)) < 0.15)
    assert term.any() and (end & ~term).any()
    t = [torch.tensor(x, dtype=torch.float64) for x in (r, q, nv, c, term, end)]
    got = retrace(t[0], t[1], t[2], t[3], t[4], t[5], gamma).numpy()
    np.testing.assert_allclose(got, direct_sum(r, q, nv, c, term, end, gamma), rtol=1e-10, atol=1e-10)
    one_step = retrace(t[0], t[1], t[2], torch.zeros_like(t[3]), t[4], t[5], gamma).numpy()
    np.testing.assert_allclose(one_step, r + gamma * (1 - term) * nv, atol=1e-12)


# --- batches ---------------------------------------------------------------------------


def discrete_setup(seed=0, T=4, B=3):
    torch.manual_seed(seed)
    obs_space, act_space = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3)
    net = DiscreteACERNet(obs_space, act_space, (16,), "tanh")
    with torch.no_grad():
        net.pi.weight.mul_(300.0)  # a far-from-uniform π
    avg = DiscreteACERNet(obs_space, act_space, (16,), "tanh")
    mu = torch.distributions.Dirichlet(torch.ones(3)).sample((T, B))
    batch = Trajectory(
        obs=torch.randn(T + 1, B, 4),
        actions=torch.randint(0, 3, (T, B)),
        rewards=torch.randn(T, B),
        terminated=torch.tensor([[0.0] * B] * (T - 1) + [[1.0] + [0.0] * (B - 1)]),
        episode_end=torch.tensor(
            [[0.0] * B] * (T - 2) + [[0.0, 1.0] + [0.0] * (B - 2)] + [[1.0] + [0.0] * (B - 1)]
        ),
        stats={"log_probs": mu.log()},
        final_t=torch.tensor([T - 2]),
        final_b=torch.tensor([1]),
        final_obs=torch.randn(1, 4),
    )
    return net, avg, batch


def continuous_setup(seed=0, T=4, B=3, D=2):
    torch.manual_seed(seed)
    obs_space, act_space = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (D,))
    net, avg = SDNet(obs_space, act_space, (16,), "tanh"), SDNet(obs_space, act_space, (16,), "tanh", -0.5)
    batch = Trajectory(
        obs=torch.randn(T + 1, B, 4),
        actions=torch.randn(T, B, D),
        rewards=torch.randn(T, B),
        terminated=torch.zeros(T, B),
        episode_end=torch.zeros(T, B),
        stats={"mean": 0.8 * torch.randn(T, B, D), "log_std": -0.7 + 0.3 * torch.randn(T, B, D)},
        final_t=torch.zeros(0, dtype=torch.long),
        final_b=torch.zeros(0, dtype=torch.long),
        final_obs=torch.zeros(0, 4),
    )
    return net, avg, batch


def terms_with(kind, seed=0, **flags):
    net, avg, batch = (discrete_setup if kind == "discrete" else continuous_setup)(seed)
    cfg = dataclasses.replace(ACERConfig(c=1.5), **flags)
    torch.manual_seed(123)  # the continuous terms sample a'_t and the SDN's u_i
    return (discrete_terms if kind == "discrete" else continuous_terms)(net, avg, batch, cfg)


# --- truncation with bias correction ---------------------------------------------------


def test_bias_correction_equals_untruncated_expectation_three_actions():
    """E_{a~μ}[ρ̄(a) A(a) ∇_φ log φ(a)] + E_{a~π}[(1 − c/ρ(a))₊ A(a) ∇_φ log φ(a)] equals the untruncated
    E_{a~μ}[ρ(a) A(a) ∇_φ log φ(a)] = Σ_a (Q(a) − V) e_a, here with Q^ret(a) = Q(s, a) for every a."""
    torch.manual_seed(3)
    space = gym.spaces.Box(-1, 1, (4,))
    net = DiscreteACERNet(space, gym.spaces.Discrete(3), (8,), "tanh")
    with torch.no_grad():
        net.pi.weight.mul_(200.0)
    s = torch.randn(1, 4)
    with torch.no_grad():
        log_pi, q = net(s)
    pi, q = log_pi.exp()[0].double().tolist(), q[0].double().tolist()
    mu = [0.7, 0.2, 0.1]
    rho = [p / m for p, m in zip(pi, mu)]
    c = float(sorted(rho)[1])  # truncation active for the largest ρ
    # one step per action, same state; Q^ret(a) = r = Q(s, a) with a terminal next state
    batch = Trajectory(
        obs=s.expand(2, 3, 4).clone(),
        actions=torch.arange(3).unsqueeze(0),
        rewards=torch.tensor([q]),
        terminated=torch.ones(1, 3),
        episode_end=torch.ones(1, 3),
        stats={"log_probs": torch.tensor(mu).log().expand(1, 3, 3).clone()},
        final_t=torch.zeros(0, dtype=torch.long),
        final_b=torch.zeros(0, dtype=torch.long),
        final_obs=torch.zeros(0, 4),
    )
    V = sum(p * qa for p, qa in zip(pi, q))
    oracle = np.array([q[a] - V for a in range(3)])  # Σ_a μ(a) ρ(a) (Q(a) − V) e_a / π(a)
    for truncation in (True, False):
        cfg = ACERConfig(c=c, ent_coef=0.0, retrace=False, truncation=truncation)
        out = discrete_terms(net, net, batch, cfg)
        g = out["g"][0].double().numpy()  # (3 samples, 3 statistics)
        expectation = sum(mu[a] * g[a] for a in range(3))
        np.testing.assert_allclose(expectation, oracle, rtol=1e-4, atol=1e-5)
        if truncation:  # brute force: truncated + correction terms
            trunc = np.array([mu[a] * min(c, rho[a]) * (q[a] - V) / pi[a] for a in range(3)])
            corr = np.array([pi[a] * max(0.0, 1 - c / rho[a]) * (q[a] - V) / pi[a] for a in range(3)])
            np.testing.assert_allclose(trunc + corr, oracle, rtol=1e-6, atol=1e-9)
            assert out["weight"].max() <= c + 1e-6 and (out["bc"] != 0).any()


# --- trust region ----------------------------------------------------------------------


def test_trust_region_projection():
    torch.manual_seed(0)
    g, k = torch.randn(1000, 5, dtype=torch.float64), torch.randn(1000, 5, dtype=torch.float64)
    delta = 0.5
    z, coef = trust_region(g, k, delta)
    assert ((k * z).sum(-1) <= delta + 1e-9).all()
    inactive = (k * g).sum(-1) <= delta
    assert inactive.any() and (~inactive).any()
    assert torch.equal(z[inactive], g[inactive]) and (coef[inactive] == 0).all()
    np.testing.assert_allclose((k * z).sum(-1)[~inactive].numpy(), delta, atol=1e-9)  # on the boundary
    # the KKT point is the closest feasible z: any feasible perturbation is farther from g
    w = torch.randn_like(z)
    w = w - ((k * w).sum(-1, keepdim=True) / (k * k).sum(-1, keepdim=True)) * k  # stays on kᵀz = δ
    assert (((z + 0.1 * w - g) ** 2).sum(-1)[~inactive] >= ((z - g) ** 2).sum(-1)[~inactive]).all()


def test_k_is_the_kl_gradient_in_statistics_space():
    out = terms_with("discrete")
    net, avg, batch = discrete_setup()
    with torch.no_grad():
        pi_avg = avg.log_pi(batch.obs[:-1].reshape(-1, 4)).exp()
        pi = net.log_pi(batch.obs[:-1].reshape(-1, 4)).exp()
    phi = pi.clone().requires_grad_(True)
    kl = (pi_avg * (pi_avg.log() - phi.log())).sum()
    np.testing.assert_allclose(
        out["k"].reshape(-1, 3).numpy(), torch.autograd.grad(kl, phi)[0].numpy(), rtol=1e-5
    )
    # Gaussian: closed form of ∇_(μ, log σ) KL(N(μ_avg, σ_avg) ‖ N(μ, σ))
    out = terms_with("continuous")
    net, avg, batch = continuous_setup()
    with torch.no_grad():
        p, pa = (
            net.dist(batch.obs[:-1].reshape(-1, 4)).detach(),
            avg.dist(batch.obs[:-1].reshape(-1, 4)).detach(),
        )
    var = p.std**2
    k_mean = (p.mean - pa.mean) / var
    k_logstd = 1 - (pa.std**2 + (p.mean - pa.mean) ** 2) / var
    np.testing.assert_allclose(
        out["k"].reshape(-1, 4).numpy(), torch.cat([k_mean, k_logstd], -1).numpy(), rtol=1e-4, atol=1e-6
    )


def test_tr_effect_is_the_share_of_the_logit_gradient_the_projection_removes():
    """Oracle: autograd through softmax. The logits' gradient of Σ π(l)·v is Jᵀv; tr_effect must be
    ‖Jᵀ(g − z*)‖ / ‖Jᵀg‖ over the batch, computed here without the code's own tangent map."""
    out = terms_with("discrete")
    net, _, batch = discrete_setup()
    with torch.no_grad():
        logits = net.pi(net.trunk(batch.obs[:-1].reshape(-1, 4))).view(out["g"].shape)
    def on_logits(v):
        lg = logits.clone().requires_grad_(True)
        return torch.autograd.grad((torch.softmax(lg, -1) * v).sum(), lg)[0]
    want = on_logits(out["g"] - out["z"]).norm() / on_logits(out["g"]).norm()
    assert out["diag"]["tr_active_frac"] > 0 and want > 1e-3            # the projection does bind here
    assert float(out["diag"]["tr_effect"]) == pytest.approx(float(want), rel=1e-4)


def test_tr_effect_is_nil_where_k_is_the_direction_the_softmax_ignores():
    """π_avg = π: k = −π_avg/π = −1 in every sample. kᵀg > δ can hold (tr_active_frac > 0), but
    the projection subtracts a multiple of 1, which no logit feels: tr_effect = 0, z* acts as g."""
    net, _, batch = discrete_setup()
    avg = copy.deepcopy(net)
    with torch.no_grad():
        batch.rewards.mul_(50.0)                                         # big advantages: kᵀg > δ
    out = discrete_terms(net, avg, batch, dataclasses.replace(ACERConfig(c=1.5), delta=0.1))
    np.testing.assert_allclose(out["k"].numpy(), -1.0, rtol=1e-5)
    assert out["diag"]["tr_active_frac"] > 0
    assert float(out["diag"]["tr_effect"]) < 1e-5


@pytest.mark.parametrize("kind", ["continuous"])
def test_tr_effect_continuous_is_the_plain_share(kind):
    out = terms_with(kind)
    want = (out["g"] - out["z"]).norm() / out["g"].norm()
    assert float(out["diag"]["tr_effect"]) == pytest.approx(float(want), rel=1e-5)


# --- ablations: each flag changes exactly its component ---------------------------------


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_each_ablation_changes_only_its_component(kind):
    base = terms_with(kind)
    assert base["diag"]["tr_active_frac"] > 0 and (base["rho"] > 1.5).any()  # every component is exercised
    same = lambda a, b: torch.allclose(a, b, atol=1e-6)  # noqa: E731

    no_tr = terms_with(kind, trust_region=False)
    for key in ("q_ret", "weight", "bc", "g", "k"):
        assert same(no_tr[key], base[key]), key
    assert torch.equal(no_tr["z"], no_tr["g"]) and not same(base["z"], base["g"])

    no_trunc = terms_with(kind, truncation=False)
    for key in ("q_ret", "k", "rho"):
        assert same(no_trunc[key], base[key]), key
    assert torch.equal(no_trunc["weight"], no_trunc["rho"]) and (no_trunc["bc"] == 0).all()
    assert not same(no_trunc["weight"], base["weight"]) and not same(no_trunc["g"], base["g"])

    no_ret = terms_with(kind, retrace=False)
    for key in ("weight", "bc", "k", "rho"):
        assert same(no_ret[key], base[key]), key
    assert not same(no_ret["q_ret"], base["q_ret"])
    net, avg, batch = (discrete_setup if kind == "discrete" else continuous_setup)()
    nv = torch.cat(
        [no_ret["V"][1:], torch.zeros(1, 3)]
    )  # one-step r + γ V(s') (checked where s' is in the batch)
    inside = batch.episode_end[:-1] == 0
    expect = batch.rewards[:-1] + 0.99 * nv[:-1]
    assert torch.allclose(no_ret["q_ret"][:-1][inside], expect[inside], atol=1e-5)
    if kind == "continuous":
        assert torch.equal(no_ret["q_opc"], no_ret["q_ret"])


def test_registry_variants_differ_from_acer_by_one_flag():
    cls, preset = registry.get("acer")
    assert cls is ACER and preset == {}
    expected = {
        "acer-no-trunc": {"truncation": False},
        "acer-no-tr": {"trust_region": False},
        "acer-no-retrace": {"retrace": False},
        "acer-no-replay": {"replay_ratio": 0},
    }
    for name, flags in expected.items():
        c, p = registry.get(name)
        assert c is ACER and p == flags


def test_no_replay_variant_learns_on_policy_only():
    run = FakeRun("CartPole-v1", 400)
    algo = ACER(ACERConfig(replay_ratio=0, replay_start=0), run)
    algo.learn()
    assert algo.memory is None and all(r["replay_updates"] == 0 for r in run.rows)
    run = FakeRun("CartPole-v1", 400)
    algo = ACER(ACERConfig(replay_start=160, replay_poisson=False), run)
    algo.learn()
    assert [r["replay_updates"] for r in run.rows] == [0, 4, 4, 4, 4]
    assert run.rows[-1]["memory_steps"] == 400


def test_tf_like_rmsprop_option():
    run = FakeRun("CartPole-v1", 160)
    algo = ACER(ACERConfig(rmsprop_tf_like=True, replay_start=80, replay_poisson=False), run)
    algo.learn()
    assert type(algo.opt).__name__ == "RMSpropTFLike" and run.rows[-1]["replay_updates"] == 4


# --- the averaged network ----------------------------------------------------------------


def test_averaged_network_moves_toward_theta_in_place():
    run = FakeRun("CartPole-v1")
    algo = ACER(ACERConfig(alpha=0.9), run)
    ptrs = [p.data_ptr() for p in algo.avg_net.parameters()]
    before = [p.clone() for p in algo.avg_net.parameters()]
    batch, _ = algo.collect()
    algo.update(batch)
    theta = list(algo.net.parameters())
    after = list(algo.avg_net.parameters())
    assert [p.data_ptr() for p in after] == ptrs  # the same tensors, updated in place
    for b, a, t in zip(before, after, theta):
        torch.testing.assert_close(a, 0.9 * b + 0.1 * t.detach())
    dist = lambda xs: sum(float((x - t.detach()).pow(2).sum()) for x, t in zip(xs, theta))  # noqa: E731
    assert dist(after) < dist(before)
    net = torch.nn.Linear(3, 2)
    avg = torch.nn.Linear(3, 2)
    w = avg.weight
    average_(avg, net, 0.0)
    assert avg.weight is w and torch.equal(avg.weight, net.weight)


# --- checkpoints -----------------------------------------------------------------------


def test_state_dict_round_trip():
    run = FakeRun("Pendulum-v1", 480)
    algo = ACER(ACERConfig(replay_start=80), run)
    algo.learn()
    state = algo.state_dict()
    other = ACER(ACERConfig(replay_start=80), FakeRun("Pendulum-v1", 480, seed=1))
    other.load_state_dict(state)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(other.predict(obs), algo.predict(obs))
    assert other.step == algo.step == 480 and other.memory.steps == algo.memory.steps
    for a, b in zip(other.avg_net.parameters(), algo.avg_net.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(other.memory.get([1], [2]).obs, algo.memory.get([1], [2]).obs)
    assert other.rng.integers(1 << 30) == algo.rng.integers(1 << 30)


# --- short runs through the runner --------------------------------------------------------


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_short_run_writes_contract_files(tmp_path, env_id):
    summary = execute("acer", env_id, 0, 2400, tmp_path, overrides={"replay_start": 400, "replay_poisson": False},
                      progress_bar=False)
    assert summary["status"] == "ok" and summary["steps_done"] == 2400
    assert json.loads((tmp_path / "summary.json").read_text())["final_eval_return"] is not None
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert len(progress) == 2400 // 80 and set(DIAGNOSTICS) <= set(progress.columns)
    assert (progress["replay_updates"].iloc[-1] == 4) and progress["kl_avg"].iloc[-1] > 0
    assert (tmp_path / "eval.csv").exists()


@pytest.mark.parametrize("variant", ["acer-no-trunc", "acer-no-tr", "acer-no-retrace", "acer-no-replay"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_every_variant_runs_on_both_action_kinds(tmp_path, variant, env_id):
    summary = execute(variant, env_id, 0, 320, tmp_path, overrides={"replay_start": 80}, progress_bar=False)
    assert summary["status"] == "ok"


# --- learning (slow) ---------------------------------------------------------------------


@pytest.mark.slow
def test_learns_cartpole(tmp_path):
    """Budget: 100k steps (hyperparams.yaml settings), ≈ 30 s on one core; the final evaluation ≥ 475."""
    summary = execute("acer", "CartPole-v1", 0, 100_000, tmp_path, progress_bar=False)
    assert summary["final_eval_return"] >= 475


@pytest.mark.slow
def test_learns_pendulum(tmp_path):
    """Budget: 50k steps (hyperparams.yaml settings), ≈ 35 s; the final evaluation ≥ −400 (random ≈ −1200;
    seeds 0–2 gave −210 … −360)."""
    summary = execute("acer", "Pendulum-v1", 0, 50_000, tmp_path, progress_bar=False)
    assert summary["final_eval_return"] >= -400
