"""lm-evaluation-harness adapter (needs the ``harness`` extra: ``pip install 'discdiff[harness]'``).

Importing this package imports ``lm_eval`` and registers ``DiscdiffLM`` as lm-eval's model ``discdiff``;
``import discdiff`` alone never imports lm_eval. See docs/lm_eval.md.

    python -m discdiff.harness --model_args pretrained=runs/sc/pretrained,num_draws=64 --tasks lambada_openai

    import lm_eval, discdiff.harness
    lm_eval.simple_evaluate(model="discdiff", model_args="pretrained=runs/sc/pretrained", tasks=["lambada_openai"])

``loglikelihood`` is a Monte Carlo estimate of a *lower bound* on log p(continuation | context) (the bound
``discdiff eval`` reports, LLaDA's conditional estimator); ``DiscdiffLM.loglikelihood_bounds`` gives each
request's bound with its standard error.
"""

from .model import Bound, DiscdiffLM

__all__ = ["Bound", "DiscdiffLM"]
