"""Class labels and per-row seeds in block diffusion: the label through the loss, the training pass, the KV cache
and the sampler (exact answers on a class-conditional toy), and batch invariance of block sampling (a row alone
or inside a batch of 8 with other prompts and labels is token-for-token identical)."""

import pytest
import torch
from sampling.helpers import total_variation

import discdiff as dd
from discdiff.exact_conditional import ClassConditionalToy, guided_log_probs
from discdiff.nn import DiffusionTransformer, TransformerConfig
from discdiff.sampling import Condition

GRAPH = dd.Absorbing(3)
TOY = ClassConditionalToy.random(num_classes=3, vocab_size=3, length=4, generator=torch.Generator().manual_seed(3))
SEEDS = [11, 5, 99, 0, 7, 123456789, 3, 42]


def block_oracle(toy: ClassConditionalToy, b: int):
    """Exact block conditionals of p(x | label) (label num_classes: the mixture p(x)), block-model signature."""
    oracles = [toy.law(c).block_denoiser_model(GRAPH, b) for c in range(toy.num_classes + 1)]

    def model(x_t, sigma_bar, x0=None, label=None):
        label = torch.full((x_t.shape[0],), toy.num_classes) if label is None else label
        out = torch.empty(*x_t.shape, GRAPH.num_states, dtype=torch.float64)
        sigma = torch.as_tensor(sigma_bar).expand(x_t.shape[0])
        for c in label.unique().tolist():
            rows = label == c
            out[rows] = oracles[c](x_t[rows], sigma[rows], x0=None if x0 is None else x0[rows])
        return out

    model.time_free, model.num_classes = True, toy.num_classes
    return model


def test_one_token_blocks_with_k_dce_are_the_exact_conditional_nll():
    """b = 1, k_dce: the loss is -log p(x0 | label) exactly, per row (labels refused by the old code)."""
    labels = torch.tensor([0, 1, 2, 3] * 4)
    x0 = torch.cat([TOY.law(c).sample(1, torch.Generator().manual_seed(i)) for i, c in enumerate(labels.tolist())])
    loss = dd.BlockDiffusion(GRAPH, dd.LogLinear(), 1).loss(block_oracle(TOY, 1), x0, "k_dce", label=labels,
                                                           generator=torch.Generator().manual_seed(1))
    exact = torch.stack([-TOY.law(c).prob_of(x[None]).log()[0] for c, x in zip(labels.tolist(), x0, strict=True)])
    torch.testing.assert_close(loss.double(), exact, rtol=0, atol=1e-4)


@pytest.mark.parametrize("sampler,opts", [("ancestral", {"steps": 32}), ("first_hitting", {})], ids=str)
def test_the_block_sampler_with_labels_draws_p_x_given_label(sampler, opts):
    labels = torch.tensor([0, 2] * 20_000)
    bd = dd.BlockDiffusion(GRAPH, dd.LogLinear(), 2)
    out = bd.sample(block_oracle(TOY, 2), len(labels), 4, sampler, label=labels,
                    generator=torch.Generator().manual_seed(4), **opts).samples
    for c in (0, 2):
        assert total_variation(out[labels == c], TOY.law(c).probs, 3) <= 0.03
        assert total_variation(out[labels == c], TOY.law(2 - c).probs, 3) > 0.1  # the label mattered


def _block_transformer(num_classes=3, block_size=2, max_len=8, vocab=5):
    cfg = TransformerConfig(num_states=vocab + 1, d_model=32, n_layers=2, n_heads=2, max_len=max_len,
                            time_conditioning=False, block_size=block_size, num_classes=num_classes)
    torch.manual_seed(0)
    model = DiffusionTransformer(cfg)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():  # random everywhere: the label embedding too
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def test_labelled_kv_cache_logits_equal_the_training_pass_and_the_recomputation():
    """At every block: cached logits == block-causal recomputation == the [x_t ; x0] training pass, all under the
    rows' labels; and the label changes them."""
    model, b = _block_transformer(), 2
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, 5, (3, 8), generator=gen)
    x_t = torch.where(torch.rand(3, 8, generator=gen) < 0.5, 5, x0)
    label = torch.tensor([0, 2, 3])
    with torch.no_grad():
        trained = model(x_t, None, label=label, x0=x0)  # (3, 8, S)
        cache = model.new_kv_cache()
        for start in range(0, 8, b):
            cached = model(x_t[:, start:start + b], None, kv_cache=cache, label=label)
            recomputed = model(torch.cat([x0[:, :start], x_t[:, start:start + b]], 1), None, label=label)
            torch.testing.assert_close(cached, recomputed[:, start:], atol=1e-5, rtol=0)
            torch.testing.assert_close(cached, trained[:, start:start + b], atol=1e-5, rtol=0)
            model.extend_kv_cache(cache, x0[:, start:start + b], label=label)
        other = model(x_t, None, label=torch.tensor([1, 0, 0]), x0=x0)
    assert (other - trained).abs().amax() > 1e-2
    with pytest.raises(ValueError, match="filled under other class labels"):
        model(x_t[:, :b], None, kv_cache=cache, label=torch.tensor([1, 2, 3]))


def _prompts(length: int, vocab: int) -> Condition:
    """8 rows with prompts of 0 to 5 tokens (some past the first block)."""
    tokens = torch.randint(0, vocab, (8, length), generator=torch.Generator().manual_seed(0))
    known = torch.arange(length)[None] < torch.tensor([0, 1, 2, 3, 0, 5, 1, 3])[:, None]
    return Condition(tokens, known)


def _alone_and_in_batch(bd, model, length, sampler, cond, labels, opts):
    one = (lambda i: {"label": labels[i:i + 1]}) if labels is not None else (lambda i: {})
    batch = bd.sample(model, 8, length, sampler, condition=cond, seeds=SEEDS, label=labels, **opts).samples
    alone = torch.cat([bd.sample(model, 1, length, sampler, seeds=[SEEDS[i]], **one(i), **opts,
                                 condition=Condition(cond.tokens[i:i + 1], cond.known[i:i + 1])).samples
                       for i in range(8)])
    return batch, alone


CASES = [("ancestral", {"steps": 4, "cache": True}), ("ancestral", {"steps": 4, "cache": False}),
         ("first_hitting", {}), ("confidence", {"steps": 2}), ("confidence", {"threshold": 0.4, "top_k": 2})]


@pytest.mark.parametrize("labelled", [True, False])
@pytest.mark.parametrize("sampler,opts", CASES, ids=str)
def test_a_block_row_is_the_same_alone_and_in_a_batch_exact_model(sampler, opts, labelled):
    bd = dd.BlockDiffusion(GRAPH, dd.LogLinear(), 2)
    labels = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3]) if labelled else None
    batch, alone = _alone_and_in_batch(bd, block_oracle(TOY, 2), 4, sampler, _prompts(4, 3), labels, opts)
    assert torch.equal(batch, alone)


@pytest.mark.parametrize("kv_cache", [True, False])
@pytest.mark.parametrize("sampler,opts", CASES, ids=str)
def test_a_block_row_is_the_same_alone_and_in_a_batch_transformer(sampler, opts, kv_cache):
    bd = dd.BlockDiffusion(dd.Absorbing(5), dd.LogLinear(), 2)
    labels = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3])
    opts = {**opts, "kv_cache": kv_cache, "eos_id": 4}  # rows leave the batch at different blocks
    if sampler == "confidence":
        # The labelled transformer differs alone vs in a batch in the last bits (another BLAS kernel for B = 1).
        # The default max_prob rule compares the two positions of a fully masked block, whose top probabilities
        # are nearly equal (measured 0.42763570 vs 0.42763564), so last bits can swap their order; the sampler's
        # own invariance under the default is the exact-model test above. The drawn-token rule has no such ties.
        opts["remasking"] = "low_confidence"
    batch, alone = _alone_and_in_batch(bd, _block_transformer(), 8, sampler, _prompts(8, 5), labels, opts)
    assert torch.equal(batch, alone)
    assert len({tuple(r) for r in batch.tolist()}) > 4  # the rows differ: seeds and labels reached them


def test_block_labels_are_checked():
    bd = dd.BlockDiffusion(dd.Absorbing(5), dd.LogLinear(), 2)
    with pytest.raises(ValueError, match="label must hold 1 or 4"):
        bd.sample(_block_transformer(), 4, 8, "ancestral", steps=2, label=[0, 1])
    with pytest.raises(ValueError, match="labels must lie in"):
        bd.sample(_block_transformer(), 2, 8, "ancestral", steps=2, label=7)
    with pytest.raises(ValueError, match="takes no class label"):
        bd.sample(_block_transformer(num_classes=None), 2, 8, "ancestral", steps=2, label=0)


def _next_token_law(probs: torch.Tensor, i: int, vocab: int, length: int) -> torch.Tensor:
    """p(x_i | x_<i) as [vocab^i, vocab] from a law over vocab^length sequences (lexicographic order)."""
    prefix = probs.reshape([vocab] * length)
    if i + 1 < length:  # (a sum over an empty dim tuple would sum everything)
        prefix = prefix.sum(dim=tuple(range(i + 1, length)))
    prefix = prefix.reshape(-1, vocab)
    return prefix / prefix.sum(-1, keepdim=True)


def _guided_sequential_law(cond: torch.Tensor, uncond: torch.Tensor, w: float, vocab: int, length: int):
    """The law of x drawn left to right, token i from softmax((1 + w) log p(x_i | x_<i, c) - w log p(x_i | x_<i)),
    by enumeration: [vocab^length] in lexicographic order (``sequence_index``'s)."""
    law = torch.ones(())
    for i in range(length):
        guided = guided_log_probs(_next_token_law(cond, i, vocab, length).log(),
                                  _next_token_law(uncond, i, vocab, length).log(), w).exp()
        law = (law.reshape(-1, 1) * guided).reshape(-1)
    return law


@pytest.mark.parametrize("sampler,opts", [("ancestral", {"steps": 8}), ("first_hitting", {})], ids=str)
def test_guided_one_token_blocks_draw_the_guided_sequential_law(sampler, opts):
    """b = 1 with guidance w against the null label: token i comes from the guided law of p(x_i | x_<i, c) and
    p(x_i | x_<i), so the sequence follows the enumerated guided sequential law (and not p(x | c))."""
    w, label = 1.5, 1
    out = dd.BlockDiffusion(GRAPH, dd.LogLinear(), 1).sample(
        block_oracle(TOY, 1), 40_000, 4, sampler, label=label, guidance=w,
        generator=torch.Generator().manual_seed(5), **opts).samples
    target = _guided_sequential_law(TOY.law(label).probs, TOY.law(TOY.num_classes).probs, w, 3, 4)
    assert abs(float(target.sum()) - 1) < 1e-9
    assert total_variation(out, target, 3) <= 0.03
    assert total_variation(out, TOY.law(label).probs, 3) > 0.05  # guidance moved the law


def test_guided_block_logits_contrast_the_label_with_the_null_label_through_both_caches():
    """GuidedContext on a transformer: per block, (1 + w) cond - w uncond of the two cached branches' log-probs,
    each equal to the recomputed model under its label (the null label's cache is its own)."""
    from discdiff.sampling.blocks import GuidedContext, KVCacheContext

    model, b, w = _block_transformer(), 2, 2.0
    gen = torch.Generator().manual_seed(6)
    x0 = torch.randint(0, 5, (2, 8), generator=gen)
    label, null = torch.tensor([0, 2]), torch.tensor([3, 3])
    ctx = GuidedContext(KVCacheContext(model, 2, 5), KVCacheContext(model, 2, 5), w, 3, 5)
    with torch.no_grad():
        for start in range(0, 8, b):
            block = torch.full((2, b), 5)
            got = ctx.logits(model, block, None, None, label=label)
            tokens = torch.cat([x0[:, :start], block], 1)
            cond = torch.log_softmax(model(tokens, None, label=label)[:, start:, :5], -1)
            uncond = torch.log_softmax(model(tokens, None, label=null)[:, start:, :5], -1)
            torch.testing.assert_close(torch.log_softmax(got, -1).double(), guided_log_probs(cond, uncond, w),
                                       atol=1e-5, rtol=0)
            ctx.append(x0[:, start:start + b], label)


def test_block_guidance_refuses_what_it_cannot_do():
    bd = dd.BlockDiffusion(dd.Absorbing(5), dd.LogLinear(), 2)
    with pytest.raises(ValueError, match="null label only"):
        bd.sample(_block_transformer(), 2, 8, "ancestral", steps=2, guidance=1.0)  # no label
    with pytest.raises(ValueError, match="null label only"):
        bd.sample(_block_transformer(), 2, 8, "ancestral", steps=2, guidance=1.0, label=0, guidance_mode="infill")
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        bd.sample(_block_transformer(), 2, 8, "ancestral", steps=2, guidance=-1.0, label=0)
