"""K-FAC (algorithms/core/kfac.py) and claim C8's toy (experiments/toys/ng_approx.py) against the
exact Fisher, formed explicitly."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from algorithms.core.fisher import cg, flat_grad, kl_hessian_fvp
from experiments.toys import ng_approx as T


def test_kronecker_factors_are_the_exact_fisher_of_one_layer_at_one_state():
    """One linear layer, one state: F_W = E_a[(ā āᵀ) ⊗ (g gᵀ)] = ā āᵀ ⊗ E_a[g gᵀ] = A ⊗ G exactly, so
    kron(G, A) must equal the explicitly formed Fisher (parameters reordered to [W | b] row-major)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(T.OBS, T.N_ACT))
    obs = torch.randn(1, T.OBS)
    F = T.exact_fisher(net, obs)
    kf = T.kfac_exact_over_actions(net, obs)
    m = kf.layers[0]
    out, inp = m.out_features, m.in_features
    order = [o * inp + i if i < inp else out * inp + o for o in range(out) for i in range(inp + 1)]
    F_wb = F[np.ix_(order, order)]
    np.testing.assert_allclose(torch.kron(kf.G[m], kf.A[m]).double().numpy(), F_wb.numpy(), rtol=1e-4, atol=1e-7)


def test_natural_gradient_is_the_damped_kronecker_inverse():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(T.OBS, 6), nn.Tanh(), nn.Linear(6, T.N_ACT))
    obs = torch.randn(20, T.OBS)
    lam = 0.05
    kf = T.kfac_exact_over_actions(net, obs, lam)
    grads = {m: (torch.randn_like(m.weight), torch.randn_like(m.bias)) for m in kf.layers}
    nat = kf.natural_gradient(grads)
    for m in kf.layers:
        gw, gb = grads[m]
        vec = torch.cat([gw, gb[:, None]], 1).reshape(-1).double()
        d = lam ** 0.5
        K = torch.kron(kf.G[m].double() + d * torch.eye(m.out_features, dtype=torch.float64),
                       kf.A[m].double() + d * torch.eye(m.in_features + 1, dtype=torch.float64))
        want = torch.linalg.solve(K, vec).reshape(m.out_features, m.in_features + 1)
        np.testing.assert_allclose(nat[m][0].double().numpy(), want[:, :-1].numpy(), rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(nat[m][1].double().numpy(), want[:, -1].numpy(), rtol=1e-3, atol=1e-6)
    assert all(p.grad is None for p in net.parameters())      # recording leaves no gradient behind


def test_cg_with_enough_steps_is_the_exact_damped_natural_gradient():
    """The Fisher-vector products our NPG / TRPO use, run to convergence, solve the explicitly formed
    (F + λI) s = g: the reference the toy scores CG and K-FAC against is the same object."""
    torch.manual_seed(2)
    net = T.policy(4)
    params = list(net.parameters())
    obs = torch.randn(64, T.OBS)
    g = flat_grad((torch.softmax(net(obs), -1) * torch.randn(64, T.N_ACT)).sum(-1).mean(), params)
    F = T.exact_fisher(net, obs)
    lam = 0.1
    u = torch.linalg.solve(F + lam * torch.eye(len(F), dtype=F.dtype), g.double())
    logits = net(obs)
    from algorithms.core.distributions import Categorical
    kl = Categorical(logits.detach()).kl(Categorical(logits)).mean()
    s, _ = cg(kl_hessian_fvp(kl, params, lam), g, 200, residual_tol=1e-20)
    cos = float(s.double() @ u / (s.double().norm() * u.norm()))
    assert cos > 0.9999 and float((s.double() - u).norm() / u.norm()) < 1e-2


def test_toy_rows_and_costs():
    rows = pd.DataFrame(T.one(8, 0, 0.1))
    assert set(rows["method"]) == {"gradient", "cg", "kfac", "exact"}
    r = rows.set_index("method")
    assert r.loc["cg", "cosine"] > r.loc["gradient", "cosine"]
    assert 0 < r.loc["kfac", "flops"] < r.loc["cg", "flops"] < r.loc["exact", "flops"]


def test_one_fisher_for_every_damping_gives_each_dampings_own_rows():
    """F formed once and solved per λ: the same rows as one λ at a time (the exact reference u against
    an independent LU solve of the same F + λI, to rounding), λ outermost in ``experiment``."""
    both = pd.DataFrame(T.one(8, 1, (1e-3, 1e-1))).drop(columns="seconds")
    alone = pd.concat([pd.DataFrame(T.one(8, 1, lam)) for lam in (1e-3, 1e-1)], ignore_index=True)
    pd.testing.assert_frame_equal(both, alone.drop(columns="seconds"))
    torch.manual_seed(1)
    net, obs = T.policy(8), torch.randn(T.N_STATES, T.OBS)
    adv = torch.randn(T.N_STATES, T.N_ACT)
    params = list(net.parameters())
    g = flat_grad((torch.softmax(net(obs), -1) * adv).sum(-1).mean(), params).double()
    F = T.exact_fisher(net, obs)
    u = torch.linalg.solve(F + 1e-3 * torch.eye(len(g), dtype=F.dtype), g)
    d = g   # the "gradient" row's cosine with u
    assert both.iloc[0]["cosine"] == pytest.approx(float(d @ u / (d.norm() * u.norm())), rel=1e-10)
    rows = pd.DataFrame(T.experiment(widths=(4, 8), seeds=2))
    assert list(rows.drop_duplicates("damping")["damping"]) == list(T.DAMPINGS)
    assert rows.groupby("damping").size().nunique() == 1


@pytest.mark.parametrize("cosine, want", [(0.97, "supported"), (0.7, "inconclusive"), (0.3, "not supported")])
def test_claim_c8_judges_the_worst_cosine(tmp_path, cosine, want):
    from analysis import synthetic
    from analysis.claims_toys import claim_c8
    from analysis.config import load_config

    d = synthetic.write_toys(tmp_path, ng_cosine=cosine)
    c = claim_c8(pd.read_csv(d / "ng_approx.csv"), load_config())
    approx = [p for p in c.parts if p.name != "cost"]
    assert len(approx) == 4 and {p.verdict for p in approx} == {want}
    assert [p.verdict for p in c.parts if p.name == "cost"] == ["supported"]


class _Head(nn.Module):
    """A conv (or its linear twin) → tanh → flatten → linear softmax head; ``log_prob_sum`` samples
    actions from the policy with a fixed seed, as ``KFACFisher.record`` wants."""

    def __init__(self, body: nn.Module, features: int, to_nchw=None) -> None:
        super().__init__()
        self.body, self.head, self.to_nchw = body, nn.Linear(features, 3), to_nchw

    def forward(self, x):
        h = torch.tanh(self.body(x) if self.to_nchw is None else self.to_nchw(self.body(x)))
        return torch.distributions.Categorical(logits=self.head(h.flatten(1)))

    def log_prob_sum(self, x):
        def f():
            d = self(x)
            with torch.no_grad():
                torch.manual_seed(7)
                a = d.sample()
            return d.log_prob(a).sum()
        return f


def _linear_twin(conv: nn.Conv2d) -> nn.Linear:
    """The linear layer with the conv's weights as a C_out × C_in·k_h·k_w matrix and its bias."""
    lin = nn.Linear(conv.weight[0].numel(), conv.out_channels)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.reshape(conv.out_channels, -1))
        lin.bias.copy_(conv.bias)
    return lin


def test_conv_factors_are_the_linear_layers_when_the_kernel_covers_the_input():
    """|T| = 1: a conv whose kernel is its whole input IS a linear layer on the flattened input
    (unfold order C_in, k_h, k_w = NCHW flattening): same factors, same natural step."""
    from algorithms.core.kfac import KFACFisher
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3)
    lin = _linear_twin(conv)
    net_c = _Head(conv, 4)
    net_l = _Head(nn.Sequential(nn.Flatten(), lin), 4)
    net_l.head.load_state_dict(net_c.head.state_dict())
    x = torch.randn(16, 2, 3, 3)
    kc, kl = KFACFisher(net_c, damping=0.1), KFACFisher(net_l, damping=0.1)
    kc.record(net_c.log_prob_sum(x))
    kl.record(net_l.log_prob_sum(x))
    torch.testing.assert_close(kc.A[conv], kl.A[lin])
    torch.testing.assert_close(kc.G[conv], kl.G[lin])
    gw, gb = torch.randn(4, 2, 3, 3), torch.randn(4)
    sc = kc.natural_gradient({conv: (gw, gb), net_c.head: (net_c.head.weight, net_c.head.bias)})[conv]
    sl = kl.natural_gradient({lin: (gw.reshape(4, 18), gb), net_l.head: (net_l.head.weight, net_l.head.bias)})[lin]
    assert sc[0].shape == gw.shape
    torch.testing.assert_close(sc[0].reshape(4, 18), sl[0])
    torch.testing.assert_close(sc[1], sl[1])


def test_conv_factors_of_a_1x1_conv_are_the_per_position_linear_layers_times_T():
    """A 1×1 conv on an H×W grid is one linear layer applied at |T| = H·W positions: Ω is that layer's
    input factor over (sample, position) rows, and G = |T|Γ is |T| times its output factor (KFC's
    |T|·Ω ⊗ Γ under spatial homogeneity)."""
    from algorithms.core.kfac import KFACFisher
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 1)
    lin = _linear_twin(conv)
    H = W = 4
    net_c = _Head(conv, 5 * H * W)
    net_l = _Head(lin, 5 * H * W, to_nchw=lambda y: y.permute(0, 3, 1, 2))
    net_l.head.load_state_dict(net_c.head.state_dict())
    x = torch.randn(8, 3, H, W)
    kc, kl = KFACFisher(net_c), KFACFisher(net_l)
    kc.record(net_c.log_prob_sum(x))
    kl.record(lambda: net_l.log_prob_sum(x.permute(0, 2, 3, 1))())
    torch.testing.assert_close(kc.A[conv], kl.A[lin])
    torch.testing.assert_close(kc.G[conv], H * W * kl.G[lin])


def test_grouped_convolutions_are_refused():
    from algorithms.core.kfac import KFACFisher
    with pytest.raises(ValueError, match="groups 1"):
        KFACFisher(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
