"""``generate_until`` for ``DiscdiffLM``: a prompt pinned as a clean prefix, the rest drawn, cut at a stop string.

Request i becomes one row of ``len(prompt) + n`` tokens, n = ``max_gen_toks`` (capped so the row fits the model's
context; a longer prompt keeps its last tokens), whose first ``len(prompt)`` positions are pinned to the prompt
(``discdiff.sampling.Condition``: for the absorbing graph an exact draw from p(rest | prompt) given an exact
model). Row i draws from its own generator seeded ``seed_for(seed, i)`` (``Diffusion.sample(seeds=)``), so its
text depends on its prompt, its gen_kwargs and the seed only, never on the other requests. Rows of one length
share a batch. The generated ids are cut at the tokenizer's EOS (a block model stops after the block holding it),
decoded, and cut at the first of the ``until`` strings.
"""

from __future__ import annotations

from discdiff.sampling import Condition
from discdiff.seeding import seed_for

from .requests import cut_at_stop, encode

__all__ = ["gen_settings", "generate"]

# lm-eval's usual generation keys: sampling here is the model's sampler (model_args sampler / steps), so the
# greedy / temperature keys tasks send by default are not applied
IGNORED_KEYS = ("do_sample", "temperature", "top_p", "top_k")


def gen_settings(gen_kwargs, default_max: int, index: int) -> tuple[list[str], int]:
    """(until, max_gen_toks) from a request's gen_kwargs; an unknown key or a bad value is a ValueError."""
    if not isinstance(gen_kwargs, dict):
        raise ValueError(f"request {index}: gen_kwargs must be a dict, got {type(gen_kwargs).__name__}")
    unknown = sorted(set(gen_kwargs) - {"until", "max_gen_toks", *IGNORED_KEYS})
    if unknown:
        raise ValueError(f"request {index}: unknown gen_kwargs {unknown}; discdiff reads until and max_gen_toks")
    until = gen_kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    if not all(isinstance(s, str) for s in until):
        raise ValueError(f"request {index}: until must be a string or a list of strings, got {until!r}")
    max_gen = gen_kwargs.get("max_gen_toks", default_max)
    if isinstance(max_gen, bool) or not isinstance(max_gen, int) or max_gen < 1:
        raise ValueError(f"request {index}: max_gen_toks must be a positive integer, got {max_gen!r}")
    return until, max_gen


def _row(lm, context: str, gen_kwargs, index: int) -> tuple[list[int], int, list[str]]:
    """(prompt ids, row length, until) of one request, the prompt cut from the left to fit the context."""
    until, max_gen = gen_settings(gen_kwargs, lm.max_gen_toks, index)
    prompt = encode(lm.pre.tokenizer, context, f"request {index}") if context else []
    n = min(max_gen, lm.context - (1 if prompt else 0))
    prompt = prompt[len(prompt) - (lm.context - n):] if len(prompt) > lm.context - n else prompt
    return prompt, len(prompt) + n, until


def generate(lm, jobs: list[tuple[str, dict]]) -> list[str]:
    """The generated text of each (context, gen_kwargs) job (see the module doc)."""
    rows = [_row(lm, context, gen_kwargs, i) for i, (context, gen_kwargs) in enumerate(jobs)]
    eos_id = getattr(lm.pre.tokenizer, "eos_id", None)
    options = {k: v for k, v in (("sampler", lm.sampler), ("steps", lm.steps)) if v is not None}
    if eos_id is not None and hasattr(lm.diffusion, "block_size"):
        options["eos_id"] = eos_id  # a block model stops after the block holding the row's first EOS
    out = [""] * len(jobs)
    by_length: dict[int, list[int]] = {}
    for i, (_, length, _) in enumerate(rows):
        by_length.setdefault(length, []).append(i)
    for length, members in by_length.items():
        for k in range(0, len(members), lm.batch_size):
            idx = members[k:k + lm.batch_size]
            seeds = [seed_for(lm.seed, i) for i in idx]
            if lm.exact:  # the AR baseline: its own left-to-right sampler continues each prompt
                samples = lm.diffusion.sample(lm.pre.model, len(idx), length, prompt=[rows[i][0] for i in idx],
                                              device=lm.device, seeds=seeds).samples
            else:
                samples = lm.diffusion.sample(lm.pre.model, len(idx), length, device=lm.device, seeds=seeds,
                                              condition=_condition([rows[i][0] for i in idx], length),
                                              **options).samples
            for b, i in enumerate(idx):
                ids = samples[b, len(rows[i][0]):].tolist()
                if eos_id is not None and eos_id in ids:
                    ids = ids[:ids.index(eos_id)]
                out[i] = cut_at_stop(lm.pre.tokenizer.decode(ids), rows[i][2])
    return out


def _condition(prompts: list[list[int]], length: int) -> Condition | None:
    """The prompts pinned at the start of rows of ``length`` tokens (None when every prompt is empty)."""
    import torch

    if not any(prompts):
        return None
    tokens = torch.zeros(len(prompts), length, dtype=torch.long)
    known = torch.zeros(len(prompts), length, dtype=torch.bool)
    for b, p in enumerate(prompts):
        tokens[b, :len(p)] = torch.tensor(p, dtype=torch.long)
        known[b, :len(p)] = True
    return Condition(tokens, known)
