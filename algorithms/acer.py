"""Actor-Critic with Experience Replay (Wang et al. 2017; seed §4.5.5), discrete and continuous.

Each iteration collects k = ``n_steps`` steps in each of the ``n_envs`` envs with the current
policy (the behaviour policy μ, whose statistics are stored), learns from that batch
on-policy, stores it, and then (once memory holds ``replay_start`` transitions) makes
n ~ Poisson(``replay_ratio``) replay updates (``replay_poisson``; else exactly ``replay_ratio``),
each on one stored segment per env, env b's taken from a slot drawn uniformly, as OpenAI Baselines
(baselines/acer/acer.py, commit ea25b9e, lines 375-379: ``n = np.random.poisson(replay_ratio)``;
baselines/acer/buffer.py lines 85-87: ``idx = np.random.randint(0, self.num_in_buffer, nenv)``,
``envx = np.arange(nenv)``).

Normalisation (``norm_obs`` / ``norm_reward``): memory holds *raw* observations (time-limit
finals included) and *raw* rewards, and every batch, on-policy or replayed, is normalised when
it is used with the VecEnv's current statistics (``Trajectory.from_numpy(..., normalizer=env)``):
s ↦ clip((s − m)/√(v + ε)), r ↦ clip(r / √(v_ret + ε)), as SB3's off-policy replay buffers do with
``VecNormalize``. So ρ, Q^ret and the critic see what the current policy sees, and one Q^ret target
never mixes reward scales.
Atari frames stay uint8 (no observation normalisation there). Every update maximises, per step t,

    ρ̄_t (Q^ret_t − V(s_t)) log π(a_t|s_t)                                  truncated IS term
    + E_{a~π}[ (1 − c/ρ(a))₊ (Q(s_t, a) − V(s_t)) log π(a|s_t) ]             bias correction
    + ent_coef · H(π(·|s_t))

with ρ(a) = π(a|s_t) / μ(a|s_t), ρ_t = ρ(a_t), ρ̄_t = min(c, ρ_t); and minimises the critic's
q_coef · ½ (Q^ret_t − Q(s_t, a_t))². V(s) = Σ_a π(a|s) Q(s, a) (discrete). The Retrace target
is computed backwards (``retrace``):

    Q^ret_t = r_t + γ V(s_{t+1}) + γ c_{t+1} (Q^ret_{t+1} − Q(s_{t+1}, a_{t+1})),   c_i = λ min(1, ρ_i)

which unrolls to the seed's sum r_t + γ V(s_{t+1}) + Σ_{t'>t} γ^{t'−t} (Π_{s=t+1}^{t'} c_s) δ_{t'},
δ_{t'} = r_{t'} + γ V(s_{t'+1}) − Q(s_{t'}, a_{t'}). A terminal s_{t+1} has value 0; a time-limit
truncation bootstraps V of the final observation and cuts the trace.

Efficient trust region: the objective's gradient g w.r.t. the statistics φ of π(·|s_t) (the
probability vector, as in the paper; a Gaussian's mean and log σ) is projected per step onto
the half-space kᵀz ≤ δ, k = ∇_φ KL(f(·|φ_avg) ‖ f(·|φ)):  z* = g − max(0, (kᵀg − δ)/‖k‖²) k
(``core.acer_ops.trust_region``), and z* is back-propagated through the network. φ_avg comes from the
averaged network θ_avg ← α θ_avg + (1 − α) θ, updated in place after every step (``average_``).

Ablations (registry variants), each switching one component: ``truncation=False`` uses ρ_t
itself and no bias correction; ``trust_region=False`` back-propagates g; ``retrace=False``
uses the one-step target r_t + γ V(s_{t+1}); ``replay_ratio=0`` learns on-policy only.
Continuous actions (Stochastic Dueling Network, Q_opc, c_i = λ min(1, ρ_i^{1/d})): see
``algorithms.acer_continuous``.
"""

from __future__ import annotations

import copy
import dataclasses

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.acer_continuous import SDNet, continuous_terms
from algorithms.acer_numpy import NumpySDN
from algorithms.base import Algorithm, BaseConfig, ConfigError
from algorithms.core.acer_ops import TermsConfig, average_, next_values, retrace, softmax_tangent, tr_diagnostics
from algorithms.core.activations import ACTIVATIONS
from algorithms.core.distributions import Categorical
from algorithms.core.envs import action_clipper
from algorithms.core.explicit import FlatParams, FlatRMSprop
from algorithms.core.fast import NumpyActor, torch_seed_for_numpy
from algorithms.core.nets import make_trunk, ortho_init
from algorithms.core.replay import ReplayMemory, Trajectory


@dataclasses.dataclass
class ACERConfig(BaseConfig):
    """Defaults are OpenAI Baselines' ACER (Atari, 16 envs there) unless stated.

    n_steps k = 20 steps per trajectory; n_envs 4 (Baselines 16); learning_rate 7e-4 with a
    linear decay (Baselines' lrschedule); RMSProp α = 0.99, ε = rms_prop_eps = 1e-5 (torch's;
    ``rmsprop_tf_like`` for Baselines' TensorFlow variant);
    q_coef 0.5; ent_coef 0.01 (paper, Atari: 0.001); max_grad_norm 10; buffer_size: transitions
    held, all envs (Baselines: 50 000 per env → 200 000 at 4 envs); replay_start: transitions
    before replay starts (Baselines: 10 000 per env → 40 000); replay_ratio 4: replay updates
    per on-policy one, drawn ~ Poisson(4) as the paper/Baselines (``replay_poisson``; False: exactly 4);
    c = 10 truncation (paper, MuJoCo: 5); delta δ = 1; alpha α = 0.99 averaging (paper,
    MuJoCo: 0.995); lambda_retrace λ = 1; sdn_samples n = 5 (continuous: SDN's Monte Carlo
    baseline); log_std_init (continuous). Ablation switches: truncation, trust_region, retrace.
    """

    n_envs: int = 4
    n_steps: int = 20
    learning_rate: float = 7e-4
    lr_schedule: str = "linear"  # "constant" or "linear" (to 0 over the run)
    rms_prop_eps: float = 1e-5
    rmsprop_tf_like: bool = False  # TF's RMSProp as in Baselines (ε inside √, mean square from 1)
    q_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 10.0
    buffer_size: int = 200_000
    replay_start: int = 40_000
    replay_ratio: int = 4
    replay_poisson: bool = True
    c: float = 10.0
    delta: float = 1.0
    alpha: float = 0.99
    lambda_retrace: float = 1.0
    sdn_samples: int = 5
    log_std_init: float = 0.0
    truncation: bool = True
    trust_region: bool = True
    retrace: bool = True

    def validate(self) -> None:
        if self.lr_schedule not in ("constant", "linear"):
            raise ConfigError("lr_schedule must be 'constant' or 'linear'")
        if self.replay_ratio < 0:
            raise ConfigError("replay_ratio must be >= 0")
        batch = self.n_steps * self.n_envs
        if self.replay_ratio > 0 and self.buffer_size < batch:
            raise ConfigError(f"buffer_size={self.buffer_size} < one batch (n_steps*n_envs={batch})")
        if self.replay_ratio > 0 and self.replay_start > self.buffer_size - self.buffer_size % batch:
            raise ConfigError(f"replay_start={self.replay_start} > what buffer_size={self.buffer_size} holds")
        if not (self.c > 0 and self.delta > 0 and 0 <= self.alpha < 1 and 0 <= self.lambda_retrace <= 1):
            raise ConfigError("need c > 0, delta > 0, 0 <= alpha < 1, 0 <= lambda_retrace <= 1")
        if self.n_steps < 1 or self.n_envs < 1 or self.sdn_samples < 1:
            raise ConfigError("n_steps, n_envs and sdn_samples must be >= 1")


# --- discrete actions ---------------------------------------------------------------------


class DiscreteACERNet(nn.Module):
    """Shared trunk (MLP or NatureCNN) with a π head (logits) and a Q head (one Q per action)."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.spaces.Discrete,
        hidden: tuple[int, ...],
        activation: str,
        cnn: str = "nature",
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.trunk, d = make_trunk(obs_space, hidden, act, cnn)
        ortho_init(self.trunk)
        self.pi = ortho_init(nn.Linear(d, int(action_space.n)), gain=0.01)
        self.q = ortho_init(nn.Linear(d, int(action_space.n)), gain=1.0)

    def log_pi(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.pi(self.trunk(obs)), -1)

    def dist(self, obs: torch.Tensor) -> Categorical:
        return Categorical(self.pi(self.trunk(obs)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(obs)
        return torch.log_softmax(self.pi(f), -1), self.q(f)


def discrete_terms(net: DiscreteACERNet, avg: DiscreteACERNet, batch: Trajectory, cfg: TermsConfig) -> dict:
    """Every quantity of one discrete ACER update on a (T, B) batch; ``loss`` is what to minimise."""
    T, B = batch.rewards.shape
    M = T * B
    obs = batch.obs.reshape((T + 1) * B, *batch.obs.shape[2:])
    log_pi_all, q_all = net(torch.cat([obs, batch.final_obs]) if len(batch.final_t) else obs)
    with torch.no_grad():
        v_all = (log_pi_all.exp() * q_all).sum(-1)  # V = Σ_a π(a|s) Q(s, a)
        log_pi_avg = avg.log_pi(obs[:M]).view(T, B, -1)
    v = v_all[: (T + 1) * B].view(T + 1, B)
    nv, V = next_values(v, v_all[(T + 1) * B :], batch.final_t, batch.final_b), v[:T]
    log_pi, q = log_pi_all[:M].view(T, B, -1), q_all[:M].view(T, B, -1)
    a = batch.actions.long().unsqueeze(-1)
    q_a = q.gather(-1, a).squeeze(-1)
    rho_all = (log_pi.detach() - batch.stats["log_probs"]).exp()  # ρ(a) = π(a|s)/μ(a|s)
    rho = rho_all.gather(-1, a).squeeze(-1)
    if cfg.retrace:
        c_ret = cfg.lambda_retrace * rho.clamp(max=1.0)  # c_i = λ min(1, ρ_i)
        q_ret = retrace(batch.rewards, q_a.detach(), nv, c_ret, batch.terminated, batch.episode_end,
                        cfg.gamma)
    else:
        q_ret = batch.rewards + cfg.gamma * (1.0 - batch.terminated) * nv

    # the objective as a function of φ = π(·|s_t), for its per-step gradient g
    phi = log_pi.detach().exp().requires_grad_(True)
    log_phi = phi.clamp(min=1e-10).log()
    adv = q_ret - V  # Q^ret − V
    if cfg.truncation:
        weight = rho.clamp(max=cfg.c)  # ρ̄_t = min(c, ρ_t)
        bc_w = (1.0 - cfg.c / rho_all).clamp(min=0.0)  # (1 − c/ρ(a))₊
        bc = (bc_w * phi.detach() * (q.detach() - V.unsqueeze(-1)) * log_phi).sum(-1)
    else:
        weight, bc = rho, torch.zeros_like(rho)
    pg = weight * adv * log_phi.gather(-1, a).squeeze(-1) + bc
    entropy = -(phi * log_phi).sum(-1)
    g = torch.autograd.grad((pg + cfg.ent_coef * entropy).sum(), phi)[0]
    pi_avg = log_pi_avg.exp()
    k = -pi_avg / phi.detach().clamp(min=1e-10)  # ∇_φ KL(π_avg ‖ φ)
    z, tr = tr_diagnostics(g, k, cfg.delta, cfg.trust_region, softmax_tangent(phi))
    policy_loss = -(log_pi.exp() * z).sum(-1).mean()  # back-propagates z* through φ
    q_loss = 0.5 * (q_ret - q_a).pow(2).mean()
    with torch.no_grad():
        kl_avg = (pi_avg * (log_pi_avg - log_pi)).sum(-1).mean()
    diag = {"pg_loss": -pg.detach().mean(), "q_loss": q_loss.detach(), "entropy": entropy.detach().mean(),
            "mean_rho": rho.mean(), "frac_truncated": (rho > cfg.c).float().mean(), "kl_avg": kl_avg, **tr}
    return {"loss": policy_loss + cfg.q_coef * q_loss, "diag": diag, "q_ret": q_ret, "weight": weight,
            "bc": bc.detach(), "g": g, "k": k, "z": z, "V": V, "rho": rho}


# --- the algorithm -----------------------------------------------------------------------


class ACER(Algorithm):
    """ACER on Discrete (``DiscreteACERNet``) or Box (``acer_continuous.SDNet``) actions.

    One ``run.log_update`` per on-policy step (k · n_envs env steps), after its replays, with
    the means over that step's updates of: pg_loss, q_loss (v_loss), entropy, mean_rho (ρ_t),
    frac_truncated (ρ_t > c), kl_avg (KL(π_avg ‖ π)), k_norm (‖k‖), tr_active_frac (kᵀg > δ),
    tr_shrink (max(0, (kᵀg − δ)/‖k‖²)), tr_effect (the change the projection makes to the logit /
    (μ, log σ) gradient, relative to it), grad_norm; mean_rho_replay / frac_truncated_replay over the replayed
    batches only; replay (0/1), replay_updates, learning_rate, memory_steps.
    With the discrete φ = π(·|s), k ≈ −1 near π_avg = π, a direction softmax back-propagation
    ignores, so tr_active_frac counts projections whose effect on the logits can be nil;
    tr_effect measures that effect.
    """

    name = "acer"
    Config = ACERConfig

    def __init__(self, cfg: ACERConfig, run) -> None:
        super().__init__(cfg, run)
        self.env = run.make_env(
            cfg.n_envs, gamma=cfg.gamma, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward
        )
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        if self.discrete:
            self.net = DiscreteACERNet(obs_space, act_space, cfg.net_arch, cfg.activation, cfg.cnn)
            self.terms, self.stat_shapes = discrete_terms, {"log_probs": (int(act_space.n),)}
        else:
            self.net = SDNet(obs_space, act_space, cfg.net_arch, cfg.activation, cfg.log_std_init, cfg.cnn)
            d = tuple(act_space.shape)
            self.terms, self.stat_shapes = continuous_terms, {"mean": d, "log_std": d}
            self.clip = action_clipper(act_space)
        self.net = self.net.to(run.device)
        self.avg_net = copy.deepcopy(self.net).requires_grad_(False)
        self.params, self.avg_params = list(self.net.parameters()), list(self.avg_net.parameters())
        # continuous actions, MLPs on the CPU: θ and θ_avg flat, the update written out in NumPy (acer_numpy)
        self.explicit = not self.discrete and NumpySDN.supports(self.net)
        if self.explicit:
            self.flat, self.avg_flat = FlatParams(self.params), FlatParams(self.avg_params)
            self.sdn = NumpySDN(self.net, self.avg_net, self.flat, self.avg_flat)
            self.actor = NumpyActor(self.net.pi_trunk, self.net.mean, self.net.log_std, 0)
            self.opt = FlatRMSprop(self.flat, cfg.learning_rate, alpha=0.99, eps=cfg.rms_prop_eps,
                                   tf_like=cfg.rmsprop_tf_like)
        elif cfg.rmsprop_tf_like:
            from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

            self.opt = RMSpropTFLike(self.params, lr=cfg.learning_rate, alpha=0.99, eps=cfg.rms_prop_eps)
        else:
            self.opt = torch.optim.RMSprop(self.params, cfg.learning_rate, alpha=0.99, eps=cfg.rms_prop_eps,
                                           foreach=True)
        self.memory = None if cfg.replay_ratio == 0 else ReplayMemory(
            cfg.n_steps, cfg.n_envs, obs_space, act_space, cfg.buffer_size, self.stat_shapes,
            frame_stacked=cfg.cnn == "nature")   # Atari stacks frames; MinAtar's grid is one image
        self.rng = np.random.default_rng(np.random.SeedSequence([run.seed, 0xACE2]))
        self.step = 0

    def predict(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            obs = torch.as_tensor(self.env.normalize_obs(obs), device=self.run.device)
            return self.net.dist(obs).mode().cpu().numpy()

    def parameter_vectors(self) -> list[torch.Tensor] | None:
        """θ and θ_avg, whose views are every parameter of ``net`` and ``avg_net`` (the MLP path)."""
        return [self.flat.theta, self.avg_flat.theta] if self.explicit else None

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "avg_net": self.avg_net.state_dict(),
                "opt": self.opt.state_dict(), "env": self.env.state_dict(), "step": self.step,
                "rng": self.rng.bit_generator.state,
                "memory": self.memory.state_dict() if self.memory is not None else None}

    def load_state_dict(self, s: dict) -> None:
        if self.explicit and "square_avg" not in s["opt"]:
            raise ConfigError("this checkpoint was written before continuous ACER's written-out update "
                              "(2026-11-27: torch's RMSprop state, torch-sampled actions); resuming would mix two "
                              "versions of the code. Delete it (restart from step 0) or use another --out.")
        self.net.load_state_dict(s["net"])
        self.avg_net.load_state_dict(s["avg_net"])
        self.opt.load_state_dict(s["opt"])
        self.env.load_state_dict(s["env"])
        self.step = s["step"]
        self.rng.bit_generator.state = s["rng"]
        if self.memory is not None and s.get("memory") is not None:
            self.memory.load_state_dict(s["memory"])

    @torch.no_grad()
    def collect(self) -> tuple[Trajectory, dict]:
        """k steps in every env with the current policy μ, which acts on the observations as the
        VecEnv normalises them at that step. Returns the batch, normalised with the statistics
        current *after* the k steps (``Trajectory.from_numpy(..., normalizer=env)``, the path
        replayed batches take too), and the raw arrays for ``ReplayMemory.add``: raw observations
        s_0 … s_k, raw rewards, and the raw final observation of every time-limit truncation."""
        env, T, N = self.env, self.cfg.n_steps, self.cfg.n_envs
        first = env.raw_obs
        dtype = np.uint8 if first.dtype == np.uint8 else np.float32
        obs = np.empty((T + 1, *first.shape), dtype)
        actions = np.empty(
            (T, N) if self.discrete else (T, N, *env.single_action_space.shape),
            np.int64 if self.discrete else np.float32,
        )
        rewards = np.empty((T, N), np.float32)
        term, trunc = np.empty((T, N), bool), np.empty((T, N), bool)
        stats = {k: np.empty((T, N, *shape), np.float32) for k, shape in self.stat_shapes.items()}
        finals: list[tuple[int, int, np.ndarray]] = []
        if self.explicit:    # MLP: actions from the NumPy actor, μ's statistics in one torch forward after
            self.actor.refresh()
            self.actor.rng = np.random.default_rng(torch_seed_for_numpy())   # the torch RNG fixes the stream
            sample, acted = self.actor.sampler(self.actor.noise(T, N)), np.empty((T, *env.obs.shape), np.float32)
        for t in range(T):
            obs[t] = env.raw_obs
            if self.explicit:
                acted[t] = env.obs
                a = sample(t, acted[t])
            else:
                dist = self.net.dist(torch.from_numpy(env.obs).to(self.run.device))
                a = dist.sample().cpu().numpy()
                for k, v in self._stats(dist).items():
                    stats[k][t] = v
            actions[t] = a
            _, _, te, tr = env.step(a if self.discrete else self.clip(a))
            rewards[t], term[t], trunc[t] = env.raw_rewards, te, tr
            if env.any_end:
                for i in np.flatnonzero(tr & ~te):
                    finals.append((t, int(i), env.raw_final_obs[i].astype(dtype)))
        obs[T] = env.raw_obs
        end = term | trunc
        if self.explicit:
            dist = self.net.dist(torch.from_numpy(acted.reshape(T * N, -1)).to(self.run.device))
            for k, v in self._stats(dist).items():
                stats[k][:] = v.reshape(stats[k].shape)
        fin = (np.array([f[0] for f in finals], np.int64), np.array([f[1] for f in finals], np.int64),
               np.stack([f[2] for f in finals]) if finals else np.zeros((0, *first.shape[1:]), dtype))
        arrays = dict(obs=obs, actions=actions, rewards=rewards, terminated=term, episode_end=end,
                      stats=stats, finals=fin)
        return Trajectory.from_numpy(**arrays, normalizer=env), arrays

    def replay_batch(self) -> Trajectory:
        """One replayed batch: env b's segment from a slot drawn uniformly, b = 0 … N − 1 (Baselines'
        buffer.get), normalised with the VecEnv's current statistics."""
        assert self.memory is not None
        return self.memory.sample(self.rng, normalizer=self.env)

    def _stats(self, dist) -> dict[str, np.ndarray]:
        """Behaviour statistics μ(·|s): log-probabilities, or (mean, log σ)."""
        if self.discrete:
            return {"log_probs": dist.logits.cpu().numpy()}
        return {"mean": dist.mean.cpu().numpy(), "log_std": dist.log_std.cpu().numpy()}

    def update(self, batch: Trajectory) -> dict[str, torch.Tensor]:
        if self.explicit:
            return self.explicit_update(batch)
        out = self.terms(self.net, self.avg_net, batch.to(self.run.device), self.cfg)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.opt.step()
        average_(self.avg_params, self.params, self.cfg.alpha)
        return {**out["diag"], "grad_norm": grad_norm}

    @torch.no_grad()
    def explicit_update(self, batch: Trajectory) -> dict[str, float]:
        """``update`` for continuous actions on MLPs on the CPU: the same terms and ∇_θ loss written out in
        NumPy (``NumpySDN``), then clipping, RMSProp and θ_avg ← α θ_avg + (1 − α) θ on the flat vectors.
        Tested against ``update``'s autograd (``tests/test_acer_numpy.py``)."""
        out = self.sdn.gradient(batch, self.cfg)
        grad_norm = self.sdn.clip_grad_norm(self.cfg.max_grad_norm)
        self.opt.step()
        self.avg_flat.theta.lerp_(self.flat.theta, 1.0 - self.cfg.alpha)
        return {**out["diag"], "grad_norm": grad_norm}

    def learn(self) -> None:
        cfg, run = self.cfg, self.run
        if self.explicit:      # the NumPy update reads and writes θ, θ_avg and ∇ through views: still the parameters'?
            self.flat.check()
            self.avg_flat.check()
        while self.step < run.total_steps:
            lr = cfg.learning_rate * (
                (1.0 - self.step / run.total_steps) if cfg.lr_schedule == "linear" else 1.0
            )
            if self.explicit:
                self.opt.lr = lr
            else:
                for group in self.opt.param_groups:
                    group["lr"] = lr
            batch, arrays = self.collect()
            self.step += cfg.n_steps * cfg.n_envs
            diags = [self.update(batch)]
            n_replay = 0
            if self.memory is not None:
                self.memory.add(**arrays)
                if self.memory.steps >= cfg.replay_start:
                    n_replay = (
                        int(self.rng.poisson(cfg.replay_ratio)) if cfg.replay_poisson else cfg.replay_ratio
                    )
                    for _ in range(n_replay):
                        diags.append(self.update(self.replay_batch()))
            keys = list(diags[0])
            if self.explicit:    # floats (float32 as the torch path's tensors)
                means = np.array([[d[k] for k in keys] for d in diags], np.float32)
            else:
                means = torch.stack([torch.stack([d[k] for k in keys]) for d in diags])
            diag = dict(zip(keys, means.mean(0).tolist()))
            rep = means[1:].mean(0).tolist() if n_replay else [float("nan")] * len(keys)
            diag.update(mean_rho_replay=rep[keys.index("mean_rho")],
                        frac_truncated_replay=rep[keys.index("frac_truncated")], replay=float(n_replay > 0),
                        replay_updates=n_replay, learning_rate=lr,
                        memory_steps=self.memory.steps if self.memory is not None else 0)
            run.log_update(self.step, diag)
