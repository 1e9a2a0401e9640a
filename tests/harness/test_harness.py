"""The lm-evaluation-harness adapter (discdiff.harness) on tiny models built here: its loglikelihood is exactly
-(Diffusion.nll's bound) under the documented seeds and masks, agrees with discdiff.evaluation on the same
sequences, generation pins the prompt and stops at stop strings, and lm_eval.simple_evaluate runs a local task."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_DATASETS_OFFLINE"] = "1"  # nothing here may reach a hub
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

pytest.importorskip("lm_eval")

import torch  # noqa: E402

from discdiff.data import CharTokenizer  # noqa: E402
from discdiff.evaluation import diffusion_nll  # noqa: E402
from discdiff.harness import DiscdiffLM  # noqa: E402
from discdiff.harness.requests import pair_row, rolling_rows  # noqa: E402
from discdiff.seeding import seed_for  # noqa: E402
from discdiff.training import DiffusionConfig, ModelConfig, build_model, from_pretrained, save_pretrained  # noqa: E402

TEXT = "ab cd.\nba dc!"
CONTEXT = 16


def _save(directory, block_size=None, seed=0, train_steps=0, kind="diffusion"):
    """A tiny char model (d=32, 2 layers, context 16) with its tokenizer; random N(0, 0.5^2) weights (so the
    zero-initialised heads are not zero), or
    ``train_steps`` Adam steps on "abab..." and "baba..." (enough to learn which letters occur)."""
    tok = CharTokenizer.from_texts([TEXT], specials=("eos",))
    tok.save(directory / "tok")
    model_cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, block_size=block_size)
    diff_cfg = DiffusionConfig(kind=kind)
    torch.manual_seed(seed)
    model = build_model(model_cfg, diff_cfg, tok.vocab_size, CONTEXT)
    if train_steps:
        _train(model, tok, train_steps)
    else:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.5)
    save_pretrained(directory / "m", model.eval(), model_cfg=model_cfg, diffusion_cfg=diff_cfg,
                    vocab_size=tok.vocab_size, context=CONTEXT, tokenizer_dir=directory / "tok")
    return directory / "m"


def _train(model, tok, steps):
    from discdiff.training import build_diffusion

    diff = build_diffusion(DiffusionConfig(), tok.vocab_size)
    data = torch.tensor([tok.encode("ab" * 8), tok.encode("ba" * 8)]).repeat(8, 1)  # both phases: the context decides
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = diff.loss(model, data, generator=gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("harness"))


@pytest.fixture(scope="module")
def block_dir(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("harness_blocks"), block_size=4)


def _independent_bound(pre, tok, context, continuation, seed, num_draws):
    """-log p(continuation | context)'s bound straight from Diffusion.nll: the harness's documented recipe."""
    head, whole = tok.encode(context), tok.encode(context + continuation)
    block = getattr(pre.diffusion, "block_size", 1)
    length = -(-len(whole) // block) * block  # a block model's rows: padded to whole blocks
    x0 = torch.zeros(1, length, dtype=torch.long)
    x0[0, :len(whole)] = torch.tensor(whole)
    padding_mask = torch.arange(length)[None] < len(whole)
    loss_mask = padding_mask & (torch.arange(length)[None] >= len(head))
    gen = torch.Generator().manual_seed(seed)
    return float(pre.diffusion.nll(pre.model, x0, num_draws=num_draws, generator=gen,
                                   padding_mask=padding_mask, loss_mask=loss_mask).mean[0])


@pytest.mark.parametrize("which", ["full", "block"])
def test_loglikelihood_is_minus_the_nll_bound(model_dir, block_dir, which):
    path = model_dir if which == "full" else block_dir
    pre = from_pretrained(path)
    lm = DiscdiffLM(pretrained=str(path), num_draws=4, seed=3, device="cpu")
    requests = [("ab c", "d."), ("ba", " dc!")]
    got = lm.loglikelihood(requests)
    for i, (context, continuation) in enumerate(requests):
        want = _independent_bound(pre, lm.pre.tokenizer, context, continuation, seed_for(3, i), 4)
        assert got[i][0] == pytest.approx(-want, rel=1e-6)
        assert got[i][1] is False
    assert all(v < 0 for v, _ in got)
    assert lm.loglikelihood(requests) == got  # deterministic for a seed
    assert DiscdiffLM(pretrained=str(path), num_draws=4, seed=4, device="cpu").loglikelihood(requests) != got


def test_batched_rows_use_one_generator_per_batch(model_dir):
    pre = from_pretrained(model_dir)
    lm = DiscdiffLM(pretrained=str(model_dir), num_draws=4, seed=5, batch_size=2, device="cpu")
    got = lm.loglikelihood_bounds([("ab", " cd"), ("ba dc", "!")])
    tok = lm.pre.tokenizer
    ids = [tok.encode("ab cd"), tok.encode("ba dc!")]
    x0 = torch.zeros(2, 6, dtype=torch.long)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    for b, row in enumerate(ids):
        x0[b, :len(row)], pad[b, :len(row)] = torch.tensor(row), True
    loss_mask = pad & (torch.arange(6)[None] >= torch.tensor([[2], [5]]))
    est = pre.diffusion.nll(pre.model, x0, num_draws=4, generator=torch.Generator().manual_seed(seed_for(5, 0)),
                            padding_mask=pad, loss_mask=loss_mask)
    assert [b.nll for b in got] == pytest.approx(est.mean.tolist(), rel=1e-6)
    assert [b.stderr for b in got] == pytest.approx(est.stderr.tolist(), rel=1e-6)


def test_the_ar_baseline_is_exact(tmp_path):
    """An AR model's value is the exact chain-rule log-likelihood of the continuation, stderr 0."""
    path = _save(tmp_path, kind="ar")
    pre = from_pretrained(path)
    lm = DiscdiffLM(pretrained=str(path), device="cpu")
    (bound,) = lm.loglikelihood_bounds([("ab c", "d.")])
    x0 = torch.tensor([pre.tokenizer.encode("ab cd.")])
    with torch.no_grad():
        log_probs = pre.diffusion.log_probs(pre.model, x0)[0]  # [L, V]: log p(x_i = v | x_<i)
    nll = -sum(float(log_probs[i, x0[0, i]]) for i in (4, 5))  # "d." after "ab c"
    assert bound.stderr == 0 and bound.nll == pytest.approx(nll, rel=1e-5)
    requests = [("ab c", {"max_gen_toks": 4}), ("d", {"max_gen_toks": 3})]
    out = lm.generate_until(requests)  # the AR baseline continues the prompt left to right
    assert all(isinstance(t, str) and len(t) <= n for t, n in zip(out, (4, 3), strict=True))
    assert DiscdiffLM(pretrained=str(path), device="cpu", batch_size=2).generate_until(requests) == out


def test_trained_continuation_scores_higher(tmp_path):
    """Trained on a and b only, the model puts the letters it saw far above ones it never saw."""
    lm = DiscdiffLM(pretrained=str(_save(tmp_path, train_steps=40)), num_draws=16, device="cpu")
    seen, unseen = lm.loglikelihood_bounds([("abababab", "abab"), ("abababab", "cd.!")])
    assert seen.nll + 3 * seen.stderr < unseen.nll - 3 * unseen.stderr


def test_rolling_agrees_with_discdiff_evaluation(model_dir):
    """The issue's check: on the same sequences the harness's bound and discdiff.evaluation's agree within
    their 95% intervals (different seeds, so different draws)."""
    pre = from_pretrained(model_dir)
    texts = ["ab cd.\nba dc!ab ", "dc!ba\nab cd.ab c", "aaaa bbbb cccc d"]
    lm = DiscdiffLM(pretrained=str(model_dir), num_draws=16, seed=1, device="cpu")
    ours = lm.rolling_bounds(texts)
    assert lm.loglikelihood_rolling(texts) == [-b.nll for b in ours]
    tokens = torch.tensor([pre.tokenizer.encode(t) for t in texts])
    theirs = diffusion_nll(pre.model, pre.diffusion, tokens, num_draws=16, seed=99)
    for b, bound in enumerate(ours):
        half = 1.96 * math.sqrt(bound.stderr ** 2 + float(theirs.mc_variance[b]))
        assert abs(bound.nll - float(theirs.per_sequence[b])) <= half
        assert bound.nll != float(theirs.per_sequence[b])  # independent draws, not the same numbers
    total = sum(b.nll for b in ours) - float(theirs.per_sequence.sum())  # the sums: their intervals overlap
    assert abs(total) <= 1.96 * math.sqrt(sum(b.stderr ** 2 for b in ours) + float(theirs.mc_variance.sum()))


def test_rolling_windows_cover_each_token_once():
    rows = rolling_rows(list(range(10)), 4)
    assert rows == [(list(range(4)), 0), (list(range(4, 8)), 0), (list(range(6, 10)), 2)]
    assert rolling_rows([], 4) == []


def test_pair_row_keeps_the_last_context_tokens():
    tok = CharTokenizer.from_texts([TEXT])
    row = pair_row(tok, "ab cd. ", "ba", 5, "request 0")
    assert tok.decode(row.ids) == "d. ba" and row.scored_from == 2  # the trailing space moved to the continuation
    with pytest.raises(ValueError, match="continuation is 6 tokens"):
        pair_row(tok, "a", "bababa", 5, "request 0")


DOCS = [{"question": "ab c", "choices": ["d.", "a!"], "answer": 0},
        {"question": "ba d", "choices": ["c!", "b."], "answer": 0},
        {"question": "ab", "choices": [" cd", " dc"], "answer": 1}]


def _write_task(tmp_path) -> list[dict]:
    """A multiple-choice task over a local jsonl file: tmp_path/tasks/toy.yaml (task discdiff_toy)."""
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.yaml").write_text(
        "task: discdiff_toy\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{{{question}}}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: answer\nmetric_list:\n  - metric: acc\n")
    source = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (tmp_path / "tasks" / "toy_ppl.yaml").write_text(  # perplexity: loglikelihood_rolling
        f"task: discdiff_toy_ppl\n{source}output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{question}}'\nmetric_list:\n  - metric: bits_per_byte\n")
    (tmp_path / "tasks" / "toy_gen.yaml").write_text(  # generation: generate_until
        f"task: discdiff_toy_gen\n{source}output_type: generate_until\ndoc_to_text: '{{{{question}}}}'\n"
        "doc_to_target: '{{choices[answer]}}'\ngeneration_kwargs:\n  until: ['!']\n  max_gen_toks: 3\n"
        "metric_list:\n  - metric: exact_match\n")
    return DOCS


@pytest.mark.parametrize("which", ["full", "block"])
def test_generate_until_pins_the_prompt_and_stops(model_dir, block_dir, which):
    path = model_dir if which == "full" else block_dir
    lm = DiscdiffLM(pretrained=str(path), seed=2, steps=4, device="cpu", batch_size=2)
    requests = [("ab c", {"until": ["a", "b"], "max_gen_toks": 6}), ("ba dc", {"max_gen_toks": 5}),
                ("dc!", {"until": "\n", "max_gen_toks": 6})]
    out = lm.generate_until(requests)
    assert all(isinstance(s, str) for s in out)
    assert "a" not in out[0] and "b" not in out[0] and len(out[0]) <= 6
    assert len(out[1]) <= 5 and "\n" not in out[2]
    alone = DiscdiffLM(pretrained=str(path), seed=2, steps=4, device="cpu").generate_until(requests)
    assert alone == out  # a row's text depends on its own seed, never on its batch


def test_simple_evaluate_on_a_local_task(model_dir, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    docs = _write_task(tmp_path)
    lm = DiscdiffLM(pretrained=str(model_dir), num_draws=2, device="cpu")
    results = lm_eval.simple_evaluate(model=lm, tasks=["discdiff_toy"], log_samples=True,
                                      task_manager=TaskManager(include_path=str(tmp_path / "tasks"),
                                                               include_defaults=False))
    samples = sorted(results["samples"]["discdiff_toy"], key=lambda s: s["doc_id"])
    requests = [tuple(args) for s in samples for args in s["arguments"]]
    assert requests[:2] == [("ab c", " d."), ("ab c", " a!")]  # the task's prompts, as lm-eval builds them
    ours = lm.loglikelihood(requests)  # the same requests in the same order: the same seeds, the same values
    logged = [r for s in samples for r in s["filtered_resps"]]
    assert [v for v, _ in logged] == pytest.approx([v for v, _ in ours]) and not any(g for _, g in logged)
    picked = [max(range(2), key=lambda c, k=k: ours[2 * k + c][0]) for k in range(len(docs))]
    want = sum(p == d["answer"] for p, d in zip(picked, docs, strict=True)) / len(docs)
    assert results["results"]["discdiff_toy"]["acc,none"] == pytest.approx(want)
    assert "discdiff_toy" in make_table(results) and "acc" in make_table(results)


def test_simple_evaluate_perplexity_and_generation_tasks(model_dir, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    _write_task(tmp_path)
    lm = DiscdiffLM(pretrained=str(model_dir), num_draws=2, steps=3, device="cpu")
    results = lm_eval.simple_evaluate(model=lm, tasks=["discdiff_toy_ppl", "discdiff_toy_gen"], log_samples=True,
                                      task_manager=TaskManager(include_path=str(tmp_path / "tasks"),
                                                               include_defaults=False))
    texts = [d["question"] for d in DOCS]
    nats = sum(-v for v in lm.loglikelihood_rolling(texts))  # the same requests in the same order
    want = nats / math.log(2) / sum(len(t.encode()) for t in texts)
    assert results["results"]["discdiff_toy_ppl"]["bits_per_byte,none"] == pytest.approx(want)
    generated = [s["filtered_resps"][0] for s in results["samples"]["discdiff_toy_gen"]]
    assert all(isinstance(g, str) and "!" not in g and len(g) <= 3 for g in generated)
    assert results["results"]["discdiff_toy_gen"]["exact_match,none"] in (0.0, 1 / 3, 2 / 3, 1.0)


def test_bad_input_errors(model_dir, tmp_path):
    with pytest.raises(ValueError, match="pretrained=DIR"):
        DiscdiffLM()
    with pytest.raises(ValueError, match="unknown model_args temprature"):
        DiscdiffLM(pretrained=str(model_dir), temprature=1)
    with pytest.raises(ValueError, match="num_draws must be an integer >= 2"):
        DiscdiffLM(pretrained=str(model_dir), num_draws="1")
    with pytest.raises(ValueError, match="batch_size=auto"):
        DiscdiffLM(pretrained=str(model_dir), batch_size="auto")
    lm = DiscdiffLM(pretrained=str(model_dir), num_draws="2", device="cpu")
    with pytest.raises(ValueError, match=r"request 1: .*character 'z'"):
        lm.loglikelihood([("ab", "c"), ("ab", "z")])
    with pytest.raises(ValueError, match="request 0: loglikelihood takes"):
        lm.loglikelihood([("ab",)])

    class Wrong:
        request_type, args = "multiple_guess", ("a", "b")

    with pytest.raises(ValueError, match="'multiple_guess' request was handed to loglikelihood"):
        lm.loglikelihood([Wrong()])
    with pytest.raises(ValueError, match="unknown gen_kwargs"):
        lm.generate_until([("ab", {"max_new_tokens": 3})])


def test_main_adds_the_model():
    from discdiff.harness.__main__ import harness_argv, main

    assert harness_argv(["--tasks", "t"]) == ["run", "--model", "discdiff", "--tasks", "t", "--device", "auto"]
    assert harness_argv(["run", "--model", "discdiff", "--tasks", "t", "--device", "cpu"]) == [
        "run", "--model", "discdiff", "--tasks", "t", "--device", "cpu"]
    with pytest.raises(ValueError, match="give the device as --device"):
        harness_argv(["--model_args", "pretrained=d,device=cpu", "--tasks", "t"])
    assert harness_argv(["ls", "tasks"]) == ["ls", "tasks"]
    assert main(["--model", "hf", "--tasks", "t"]) == 2


def test_command_line_runs_a_local_task(model_dir, tmp_path):
    """python -m discdiff.harness: lm-eval's own CLI with --model discdiff, on the local task."""
    _write_task(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "discdiff.harness", "--model_args",
                           f"pretrained={model_dir},num_draws=2", "--tasks", "discdiff_toy",
                           "--include_path", str(tmp_path / "tasks")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "discdiff_toy" in done.stdout and "acc" in done.stdout


def test_import_discdiff_does_not_import_lm_eval():
    code = ("import sys, discdiff, discdiff.training, discdiff.evaluation, discdiff.hf\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lm_eval'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_a_transformers_masked_lm(tmp_path):
    """A transformers masked LM (discdiff.hf.from_transformers: ids mapped, its MASK moved last) is scored
    by the same estimator: the harness equals Diffusion.nll on the mapped ids."""
    transformers = pytest.importorskip("transformers")
    from discdiff.hf import from_transformers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefg"]
    tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
    torch.manual_seed(0)
    pre = from_transformers(transformers.BertForMaskedLM(config).eval(), tokenizer)
    lm = DiscdiffLM(pretrained=pre, num_draws=4, seed=7, device="cpu")
    (value, greedy), = lm.loglikelihood([("a b", " c d")])
    want = _independent_bound(pre, pre.tokenizer, "a b", " c d", seed_for(7, 0), 4)
    assert value == pytest.approx(-want, rel=1e-6) and value < 0 and greedy is False
