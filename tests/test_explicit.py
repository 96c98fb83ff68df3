"""Explicit back-propagation and flat Adam (core/explicit.py) against their oracles: autograd on the
same loss, ``torch.optim.Adam`` and ``torch.nn.utils.clip_grad_norm_`` on the same gradients, and
PPO trained through either path."""
import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.core.explicit import FlatAdam, FlatParams
from algorithms.core.nets import ActorCritic
from algorithms.ppo import PPO, PPOConfig
from experiments.runner import execute

OBS = gym.spaces.Box(-1, 1, (5,))
SPACES = {"discrete": gym.spaces.Discrete(3), "continuous": gym.spaces.Box(-1, 1, (2,))}


def _policy(space, activation="tanh", seed=0) -> ActorCritic:
    torch.manual_seed(seed)
    pi = ActorCritic(OBS, space, (8, 6), activation, log_std_init=-0.3)
    with torch.no_grad():   # move away from the orthogonal init (small head gain) so every term matters
        for p in pi.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return pi


def _ppo(pi: ActorCritic, **cfg) -> PPO:
    """A PPO's update machinery around ``pi``, without a run (the gradient methods need no env)."""
    ppo = PPO.__new__(PPO)
    ppo.cfg, ppo.policy = PPOConfig(**cfg), pi
    ppo.bind()
    return ppo


def _minibatch(pi: ActorCritic, B: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, 5, generator=g)
    with torch.no_grad():
        dist, v = pi(obs)
        act = dist.sample(generator=g)
        logp_old = dist.log_prob(act) + 0.3 * torch.randn(B, generator=g)   # ρ spread over both sides of the clip
        v_old = v + 0.2 * torch.randn(B, generator=g)
    return obs, act, logp_old, v_old, torch.randn(B, generator=g), torch.randn(B, generator=g)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("clip_range_vf", [None, 0.1])
@pytest.mark.parametrize("ent_coef", [0.0, 0.01])
def test_ppo_explicit_gradient_equals_autograd(space, activation, clip_range_vf, ent_coef):
    ppo = _ppo(_policy(SPACES[space], activation), clip_range_vf=clip_range_vf, ent_coef=ent_coef)
    mb = _minibatch(ppo.policy)
    stats_ref = ppo.autograd_grad(*mb, eps=0.2)
    g_ref = ppo.flat.grad.clone()
    ppo.flat.grad.fill_(float("nan"))          # every entry must be written
    stats = ppo.explicit_grad(*mb, eps=0.2)
    torch.testing.assert_close(ppo.flat.grad, g_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats, stats_ref)
    # the minibatch exercises both branches of the clip, else the test would not test the min's gradient
    ratio = (ppo.policy.dist(mb[0]).log_prob(mb[1]) - mb[2]).exp()
    assert ((ratio - 1).abs() > 0.2).any() and ((ratio - 1).abs() < 0.2).any()


def test_flat_params_alias_the_module():
    pi = _policy(SPACES["continuous"])
    before = copy.deepcopy(pi.state_dict())
    flat = FlatParams(list(pi.parameters()))
    for k, v in pi.state_dict().items():       # rebinding keeps the values
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        flat.theta.add_(1.0)                    # writing θ moves every parameter
    for k, v in pi.state_dict().items():
        torch.testing.assert_close(v, before[k] + 1.0)
    pi.load_state_dict(before)                  # and loading a state dict writes θ
    torch.testing.assert_close(flat.theta, torch.cat([v.reshape(-1) for v in before.values()]))
    assert all(p.is_leaf and p.requires_grad for p in pi.parameters())


@pytest.mark.parametrize("max_norm", [0.05, 100.0])   # clipping active, and not
def test_clip_and_adam_equal_torch(max_norm):
    torch.manual_seed(0)
    pi_ref, pi = _policy(SPACES["discrete"]), _policy(SPACES["discrete"])
    ref = torch.optim.Adam(pi_ref.parameters(), lr=3e-3, eps=1e-5)
    flat = FlatParams(list(pi.parameters()))
    opt = FlatAdam(flat, lr=3e-3, eps=1e-5)
    for k in range(6):
        if k == 3:   # a schedule changes the rate between steps
            ref.param_groups[0]["lr"] = opt.lr = 1e-3
        grads = [torch.randn_like(p) for p in pi_ref.parameters()]
        for p, g in zip(pi_ref.parameters(), grads):
            p.grad = g.clone()
        norm_ref = torch.nn.utils.clip_grad_norm_(list(pi_ref.parameters()), max_norm)
        ref.step()
        flat.grad.copy_(torch.cat([g.reshape(-1) for g in grads]))
        norm = flat.clip_grad_norm(max_norm)
        opt.step()
        torch.testing.assert_close(norm, norm_ref)
        for (name, a), b in zip(pi.named_parameters(), pi_ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"step {k}: {name}")
    state = opt.state_dict()
    opt2 = FlatAdam(flat, lr=0.0)
    opt2.load_state_dict(state)
    assert opt2.t == 6 and opt2.lr == 1e-3 and torch.equal(opt2.m, opt.m) and torch.equal(opt2.v, opt.v)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_trains_the_same_through_either_path(tmp_path, monkeypatch, env_id):
    """Two updates of 4 epochs × 4 minibatches from one seed: the explicit path's parameters
    equal autograd's up to float rounding, and the logged diagnostics agree."""
    overrides = {"n_steps": 64, "batch_size": 16, "n_epochs": 4, "learning_rate": 3e-3, "ent_coef": 0.01}
    finals, init = {}, PPO.__init__
    for path in ("explicit", "autograd"):
        captured = {}

        def spy_init(self, cfg, run, path=path, captured=captured):
            init(self, cfg, run)
            self.explicit = path == "explicit"
            captured["ppo"] = self
        monkeypatch.setattr(PPO, "__init__", spy_init)
        summary = execute("ppo", env_id, 0, 128, tmp_path / path, overrides=overrides, progress_bar=False,
                          eval_episodes=1)
        assert summary["status"] == "ok"
        finals[path] = captured["ppo"].flat.theta.clone()
        monkeypatch.undo()
    torch.testing.assert_close(finals["explicit"], finals["autograd"], rtol=1e-4, atol=1e-5)
    rows = {p: np.genfromtxt(tmp_path / p / "progress.csv", delimiter=",", names=True) for p in finals}
    for key in ("pg_loss", "value_loss", "approx_kl"):
        np.testing.assert_allclose(rows["explicit"][key], rows["autograd"][key], rtol=1e-3, atol=1e-6)
