"""Hugging Face in: a transformers masked LM as a discdiff denoiser on the absorbing graph, with its mask
token moved last by an exact id map; samplers, nll, evaluate and the demo engine run on it."""

import pytest
import torch
import transformers
from hf_helpers import BERT_SIZE, HF_MASK, WORDS, save_tiny, tiny_bert

import discdiff as dd
import discdiff.hf as dh
from discdiff.categorical import NEG_INF
from discdiff.training import ModelConfig, from_pretrained

ABSORBING_SAMPLERS = ["euler", "tau_leaping", "tweedie", "ancestral", "first_hitting", "confidence"]


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


@pytest.fixture(scope="module")
def wrapped(bert):
    return dh.from_transformers(*bert)


def test_token_map_moves_the_mask_last_and_keeps_the_order():
    m = dh.TokenMap(6, 2)
    assert m.to_hf.tolist() == [0, 1, 3, 4, 5, 2] and m.to_discdiff.tolist() == [0, 1, 5, 2, 3, 4]
    assert m.vocab_size == 5 and m.decode(m.encode([4, 2, 0])) == [4, 2, 0]


def test_logits_are_the_networks_with_mask_and_specials_removed(bert, wrapped):
    model, tokenizer = bert
    assert wrapped.diffusion.graph.mask_id == BERT_SIZE - 1 and wrapped.vocab_size == BERT_SIZE - 1
    x_hf = torch.tensor([[2, 15, HF_MASK, 16, HF_MASK, 3]])
    x_dd = wrapped.model.token_map.to_discdiff[x_hf]
    assert x_dd[0, 2] == wrapped.diffusion.graph.mask_id
    with torch.no_grad():
        out = wrapped.model(x_dd)
        raw = model(input_ids=x_hf).logits
    special = {0, 2, 3, *range(len(WORDS), BERT_SIZE)}  # PAD CLS SEP and rows past the tokenizer (UNK kept)
    for d in range(BERT_SIZE - 1):
        h = d if d < HF_MASK else d + 1
        expected = torch.full_like(raw[..., h], NEG_INF) if h in special else raw[..., h]
        assert torch.equal(out[..., d], expected), (d, h)
    assert (out[..., -1] == NEG_INF).all()


def test_one_token_likelihood_is_the_networks_prediction_at_mask(bert, wrapped):
    """Exact answer: for L = 1, k-DCE is deterministic and equals -log p(x0 | [MASK]) over the allowed tokens."""
    model, tokenizer = bert
    allowed = [h for h in range(BERT_SIZE) if h not in (0, 2, 3, HF_MASK) and h < len(WORDS)]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[HF_MASK]])).logits[0, 0, allowed]
    log_probs = torch.log_softmax(logits.double(), -1)
    for word in ("cat", "h", "a"):
        x0 = torch.tensor([tokenizer_ids := wrapped.tokenizer.encode(word)])
        assert len(tokenizer_ids) == 1
        est = wrapped.diffusion.nll(wrapped.model, x0, "k_dce", num_draws=2, generator=torch.Generator().manual_seed(0))
        expected = -log_probs[allowed.index(tokenizer.convert_tokens_to_ids(word))]
        assert est.mean.item() == pytest.approx(expected.item(), abs=1e-5) and est.stderr.item() == 0


@pytest.mark.parametrize("sampler", ABSORBING_SAMPLERS)
def test_every_absorbing_sampler_draws_the_token_the_network_insists_on(sampler):
    """Bias the head towards 'sat' (HF id past the mask: the map shifts it) and towards [PAD] (suppressed)."""
    model, tokenizer = tiny_bert()
    with torch.no_grad():
        model.get_output_embeddings().bias[tokenizer.convert_tokens_to_ids("sat")] += 60.0
        model.get_output_embeddings().bias[0] += 200.0  # [PAD]: suppressed, so never drawn however likely
    pre = dh.from_transformers(model, tokenizer)
    out = pre.diffusion.sample(pre.model, 2, 6, sampler, steps=8, generator=torch.Generator().manual_seed(0))
    assert out.samples.tolist() == [[pre.tokenizer.encode("sat")[0]] * 6] * 2
    assert pre.tokenizer.decode(out.samples[0].tolist()) == "sat sat sat sat sat sat"


def test_nll_and_evaluate_run(wrapped):
    from discdiff.evaluation import evaluate

    x0 = torch.tensor([wrapped.tokenizer.encode("the cat sat a b c"), wrapped.tokenizer.encode("a b c d e f")])
    est = wrapped.diffusion.nll(wrapped.model, x0, num_draws=4, generator=torch.Generator().manual_seed(0))
    assert est.mean.shape == (2,) and bool(torch.isfinite(est.mean).all()) and bool((est.mean > 0).all())
    ev = evaluate(wrapped, x0, num_draws=2, batch_size=2)
    assert set(ev.results) == {"t_dce", "k_dce"} and ev.same_model


def test_padding_becomes_the_attention_mask(bert, wrapped):
    model, _ = bert
    x_dd = torch.tensor([wrapped.tokenizer.encode("the cat sat a")])
    x_dd[0, 1] = wrapped.diffusion.graph.mask_id
    pad = torch.tensor([[True, True, True, False]])
    with torch.no_grad():
        out = wrapped.model(x_dd, None, pad)
        raw = model(input_ids=wrapped.model.token_map.to_hf[x_dd], attention_mask=pad.long()).logits
    h = wrapped.model.token_map.to_hf[wrapped.tokenizer.encode("cat")[0]]
    assert torch.equal(out[..., wrapped.tokenizer.encode("cat")[0]], raw[..., h])


def test_demo_engine_runs_on_a_wrapped_masked_lm(wrapped):
    from discdiff.serve import Engine

    engine = Engine(wrapped.model, wrapped.diffusion, wrapped.tokenizer, name="bert", context=16)
    events = []
    job = engine.parse({"template": "the {3} sat", "sampler": "first_hitting", "num_samples": 1, "seed": 0})
    engine.run(job, lambda kind, data: events.append((kind, data)), lambda: None)
    assert events[-1][0] == "done" and events[-1][1]["text"][0].startswith("the ")


def test_a_model_without_a_mask_token_is_refused(bert):
    model, _ = bert
    with pytest.raises(ValueError, match="no mask token") as err:
        dh.from_transformers(model)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("time_conditioning", [False, True])
@pytest.mark.parametrize("sampler", ["ancestral", "first_hitting", "euler"])
def test_same_samples_as_the_native_model(tmp_path, time_conditioning, sampler):
    """A discdiff model exported to transformers, loaded by AutoModelForMaskedLM and wrapped by discdiff.hf,
    samples token for token what discdiff's own from_pretrained model samples with the same seed."""
    save_tiny(tmp_path / "m", ModelConfig(d_model=16, n_layers=2, n_heads=2, cond_dim=8,
                                          time_conditioning=time_conditioning))
    native = from_pretrained(tmp_path / "m")
    wrapped = dh.from_transformers(transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "m"))
    assert wrapped.model.token_map.to_hf.tolist() == list(range(8))  # MASK is already last: the identity
    assert wrapped.model.time_free is (not time_conditioning)

    def draw(pre):
        return pre.diffusion.sample(pre.model, 3, 16, sampler, steps=10, generator=torch.Generator().manual_seed(5))

    a, b = draw(native), draw(wrapped)
    assert torch.equal(a.samples, b.samples) and a.nfe == b.nfe
    x0 = a.samples
    nll = [pre.diffusion.nll(pre.model, x0, num_draws=4, generator=torch.Generator().manual_seed(0)).mean
           for pre in (native, wrapped)]
    assert torch.allclose(nll[0], nll[1], rtol=0, atol=1e-6)


def test_from_a_directory_keeps_discdiffs_tokenizer_and_schedule(tmp_path):
    from discdiff.data import CharTokenizer

    tok_dir = CharTokenizer.from_texts(["abcdefg"]).save(tmp_path / "tok")
    save_tiny(tmp_path / "m", ModelConfig(d_model=16, n_layers=1, n_heads=2), tokenizer_dir=tok_dir,
              diffusion=dd_config(schedule="cosine"))
    pre = dh.from_transformers(tmp_path / "m")
    assert pre.tokenizer.decode(pre.tokenizer.encode("gab")) == "gab"
    assert isinstance(pre.diffusion.schedule, dd.Cosine)


def dd_config(**kwargs):
    from discdiff.training import DiffusionConfig

    return DiffusionConfig(**kwargs)


def test_shifted_logits_read_position_i_from_i_minus_1(bert):
    """Dream-style (AR-adapted) models: the prediction for token i sits at position i - 1."""
    model, tokenizer = bert
    pre = dh.from_transformers(model, tokenizer, shift_logits=True, suppress="none")
    x_dd = torch.tensor([pre.tokenizer.encode("the cat sat a b")])
    with torch.no_grad():
        out = pre.model(x_dd)[..., :-1]
        raw = model(input_ids=pre.model.token_map.to_hf[x_dd]).logits[..., pre.model.token_map.to_hf[:-1]]
    assert torch.equal(out[:, 1:], raw[:, :-1]) and torch.equal(out[:, 0], raw[:, 0])


@pytest.mark.parametrize("kind", ["block", "labels", "score"])
def test_exported_models_that_are_no_plain_masked_lm_are_refused(tmp_path, kind):
    from discdiff.training import DiffusionConfig

    model_cfg = {"block": ModelConfig(d_model=16, n_layers=1, n_heads=2, block_size=4),
                 "labels": ModelConfig(d_model=16, n_layers=1, n_heads=2, num_classes=2),
                 "score": ModelConfig(d_model=16, n_layers=1, n_heads=2, time_conditioning=True)}[kind]
    diffusion = DiffusionConfig(parameterization="score") if kind == "score" else None
    save_tiny(tmp_path / "m", model_cfg, diffusion)
    with pytest.raises(ValueError, match="discdiff.training.from_pretrained"):
        dh.from_transformers(tmp_path / "m")
