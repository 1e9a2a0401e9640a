"""Hugging Face ``transformers`` in and out (needs the ``hf`` extra: ``pip install 'discdiff[hf]'``).

Out: a discdiff ``pretrained/`` directory is a transformers model directory (``model_type: "discdiff"``);
after ``import discdiff``, ``transformers.AutoConfig`` / ``AutoModel.from_pretrained(dir)`` load it as
``DiscdiffModel`` (discdiff/hf/hf_model.py), registered when transformers' Auto layer loads (discdiff/hf_hook.py).

In: ``from_transformers(model_or_path)`` wraps a masked LM (BERT, RoBERTa, ModernBERT, ...) as a denoiser on
the absorbing graph with its own mask token (discdiff/hf/masked_lm.py), for every absorbing-graph sampler,
``Diffusion.nll`` and ``discdiff.evaluation.evaluate``. See docs/hf.md.

Importing this package does not import transformers; ``from_transformers`` does, when called.
"""

from .load import from_transformers, load_pretrained
from .masked_lm import MaskedLMDenoiser, TokenMap
from .tokenizer import MappedTokenizer

__all__ = ["MappedTokenizer", "MaskedLMDenoiser", "TokenMap", "from_transformers", "load_pretrained"]
