"""Evaluation: likelihoods with confidence intervals, and generative perplexity under an AR judge.

    from discdiff.evaluation import evaluate, load_eval_data, compare
    from discdiff.training import from_pretrained
    data = load_eval_data("data/shakespeare", context=256, max_sequences=512)  # spread over the split
    ev = evaluate(from_pretrained("runs/sc/pretrained"), data, num_draws=16)
    print(ev.primary)          # t_dce: 2.1 bits/token [2.0, 2.2] (bound, 16 draws; ...)
    ar = evaluate(from_pretrained("runs/ar/pretrained"), data).primary
    compare(ev.primary, ar)    # paired diffusion - AR difference and diffusion / AR ratio, with intervals

    from discdiff.evaluation import ARJudge, generative_perplexity
    judge = ARJudge.from_pretrained(from_pretrained("runs/ar/pretrained"))
    report = generative_perplexity(samples, judge, categorical="float64")
"""

from .data import EvalData, as_batches, data_hash, load_eval_data
from .judge import (
    JUDGE_INSTALL_HINT,
    ARJudge,
    GenerativePerplexity,
    HFJudge,
    JudgeScores,
    UnigramEntropy,
    generative_perplexity,
    unigram_entropy,
)
from .likelihood import (
    Comparison,
    Evaluation,
    Interval,
    LikelihoodResult,
    ar_nll,
    compare,
    diffusion_nll,
    evaluate,
)

__all__ = [
    "Interval",
    "UnigramEntropy",
    "ARJudge",
    "Comparison",
    "EvalData",
    "Evaluation",
    "GenerativePerplexity",
    "HFJudge",
    "JUDGE_INSTALL_HINT",
    "JudgeScores",
    "LikelihoodResult",
    "ar_nll",
    "as_batches",
    "compare",
    "data_hash",
    "diffusion_nll",
    "evaluate",
    "generative_perplexity",
    "load_eval_data",
    "unigram_entropy",
]
