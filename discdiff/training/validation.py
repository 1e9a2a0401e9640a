"""Training-time validation: the estimator ``discdiff eval`` uses (``discdiff.evaluation.estimator.batch_nll``,
the same one ``diffusion_nll``, ``ar_nll`` and ``conditional_nll`` run), on a fixed, seeded spread of windows.

What the validation set holds decides what is measured, exactly as in ``discdiff eval``:

    prompt-response pairs   -log p(response | prompt): the loss mask keeps the prompt clean and unscored
    class labels            -log p(x | c) of a class-conditional model (model.num_classes): each window's label
    EOS records             bits per *real* token: a record (response) and its one EOS; EOS padding apart
"""

from __future__ import annotations

import contextlib

import torch

from discdiff.data.splits import spread_sample
from discdiff.diffusion import Diffusion
from discdiff.evaluation import LikelihoodResult
from discdiff.evaluation.estimator import batch_nll

from .distributed import seed_for

__all__ = ["EVAL_DRAWS", "counting_ids", "validation_nll"]

EVAL_DRAWS = 4  # times per validation window (stratified per window) in training-time validation


def counting_ids(dataset) -> tuple[int | None, int | None]:
    """(eos_id, bos_id) that say which scored tokens are real: EOS-padded records' (``data.records=eos``) and
    prompt-response pairs' EOS (and a record's BOS); (None, None) for running text and PAD-padded records,
    whose attention mask already says it. The ids ``discdiff eval`` takes from a model's ``records`` layout."""
    if getattr(getattr(dataset, "data", None), "prompt_lengths", None) is not None:
        return dataset.eos_id, None
    if getattr(dataset, "padding", None) == "eos":
        return dataset.eos_id, dataset.bos_id
    return None, None


def validation_nll(trainer, stream: int) -> LikelihoodResult | None:
    """``Trainer.evaluate``'s work (see its docstring); ``stream`` is the trainer's EVAL random stream."""
    cfg, dist, valid = trainer.cfg, trainer.dist, trainer.data.valid
    if valid is None:
        return None
    exact = not isinstance(trainer.diffusion, Diffusion)  # the AR baseline: exact NLL, nothing to draw
    draws = 0 if exact else EVAL_DRAWS
    rows = max(1, trainer.micro // draws) if draws else trainer.micro
    chunks = min(cfg.eval_batches, len(valid) // rows)
    chunks -= chunks % dist.world_size
    if chunks == 0:
        return None
    drawn = spread_sample(len(valid), chunks * rows, seed_for(cfg.seed, stream))
    values = torch.zeros(4, drawn.size, dtype=torch.float64, device=dist.device)  # nats, tokens, MC var, padding
    objective = None if exact else cfg.diffusion.objective or trainer.diffusion.default_objective
    eos_id, bos_id = counting_ids(valid)
    conditional = False
    trainer.model.eval()
    dist.reshard(trainer.model)
    with trainer.ema.swapped_in() if trainer.ema else contextlib.nullcontext():
        for c in range(dist.rank, chunks, dist.world_size):
            window = slice(c * rows, (c + 1) * rows)
            batch = valid.get(drawn.indices[window], 0, randomize=False)
            label = batch.labels if cfg.model.num_classes is not None else None
            conditional = label is not None or batch.loss_mask is not None
            generator = torch.Generator(dist.device).manual_seed(seed_for(cfg.seed, stream, c))
            on = lambda t: None if t is None else t.to(dist.device)  # noqa: E731
            with torch.no_grad(), trainer.autocast():
                part = batch_nll(trainer.model, trainer.diffusion, on(batch.tokens), on(batch.mask), objective,
                                 num_draws=max(draws, 1), generator=generator, loss_mask=on(batch.loss_mask),
                                 label=on(label), eos_id=eos_id, bos_id=bos_id)
            if bool((part.lengths == 0).any()):
                raise ValueError("every validation example needs at least one real token")
            padding = torch.zeros(rows, dtype=torch.float64)
            padding[0] = part.padding
            values[:, window] = torch.stack([part.mean, part.lengths.double(), part.variance, padding]).to(dist.device)
        dist.reshard(trainer.model)  # before the training weights come back
    dist.all_reduce_sum(values)
    values = values.cpu()
    estimator = ("exact_ar" if exact else objective) + ("_conditional" if conditional else "")
    return LikelihoodResult(estimator, exact, values[0], values[1].round().long(), values[2], draws,
                            f"validation:{cfg.seed}:{drawn.size}/{drawn.population}", split_sample=drawn,
                            padding_tokens=int(values[3].sum()))
