"""Tiny models for the Hugging Face tests, built here (no hub, no downloads)."""

from __future__ import annotations

import torch

from discdiff.training import DiffusionConfig, ModelConfig, build_model, save_pretrained

# [MASK] sits inside the vocabulary (id 11), as in real tokenizers, so the id map is not the identity
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"abcdefg", "[MASK]", *"hij", "the", "cat", "sat"]
HF_MASK = WORDS.index("[MASK]")
BERT_SIZE = 24  # embedding rows past the tokenizer's 18 words, as real checkpoints pad their vocabularies


def tiny_bert(seed: int = 0):
    """A random-initialised BertForMaskedLM (d=16, 1 layer) and its WordPiece tokenizer."""
    import transformers

    tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    config = transformers.BertConfig(vocab_size=BERT_SIZE, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(seed)
    return transformers.BertForMaskedLM(config).eval(), tokenizer


def save_tiny(directory, model_cfg: ModelConfig, diffusion=None, vocab_size: int = 7, context: int = 16,
              seed: int = 0, tokenizer_dir=None, conditioning=None):
    """A discdiff model with every weight drawn N(0, 0.5^2) (so adaLN-zero and zero heads are not zero)."""
    diffusion = diffusion or DiffusionConfig()
    torch.manual_seed(seed)
    model = build_model(model_cfg, diffusion, vocab_size, context)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    save_pretrained(directory, model.eval(), model_cfg=model_cfg, diffusion_cfg=diffusion, vocab_size=vocab_size,
                    context=context, tokenizer_dir=tokenizer_dir, conditioning=conditioning)
    return model.eval()
