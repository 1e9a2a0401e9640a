"""-log p(response | prompt): the AR baseline's exact value and the diffusion bound on the same pairs."""

import torch

import discdiff as dd
from discdiff.data.loader import Batch
from discdiff.evaluation.conditional import conditional_nll
from discdiff.exact import ToyDistribution
from discdiff.exact_conditional import prompt_response_entropy
from discdiff.nn import DiffusionTransformer, TransformerConfig


def test_the_ar_conditional_nll_is_the_chain_rule_over_the_response():
    torch.manual_seed(0)
    net = DiffusionTransformer(TransformerConfig(num_states=6, d_model=32, n_layers=2, n_heads=2, max_len=8,
                                                 causal=True)).eval()
    ar = dd.Autoregressive(5)
    x = torch.randint(0, 5, (4, 7))
    loss_mask = torch.arange(7).expand(4, -1) >= 3
    with torch.no_grad():
        conditional = ar.loss(net, x, loss_mask=loss_mask)
        expected = ar.loss(net, x) - ar.loss(net, x[:, :3])  # -log p(x) + log p(prompt)
    torch.testing.assert_close(conditional, expected, atol=1e-4, rtol=0)


def test_the_diffusion_bound_on_pairs_matches_the_conditional_entropy():
    joint = ToyDistribution.random(3, 4, torch.Generator().manual_seed(2), concentration=0.5)
    graph = dd.Absorbing(3)
    gen = torch.Generator().manual_seed(0)
    x0 = joint.sample(2048, gen)
    loss_mask = torch.arange(4).expand(2048, -1) >= 2
    batches = [Batch(x0[i:i + 512], torch.ones_like(x0[i:i + 512], dtype=torch.bool), None, loss_mask[i:i + 512])
               for i in range(0, 2048, 512)]
    res = conditional_nll(joint.denoiser_model(graph), dd.Diffusion(graph, dd.LogLinear(eps=1e-4), "denoiser"),
                          batches, "k_dce", num_draws=4)
    assert int(res.lengths.sum()) == 2048 * 2  # response tokens only
    lo, hi = res.ci_nats_per_sequence
    target = prompt_response_entropy(joint, 2)
    assert lo - 0.01 <= target <= hi + 0.01
