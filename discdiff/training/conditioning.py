"""What training adds for conditional models: condition dropout (the null label, or the prompt shown as MASK,
that classifier-free guidance contrasts with), the conditioning record a pretrained directory keeps, and
starting a new run from the weights of another model (``init_from``, supervised fine-tuning)."""

from __future__ import annotations

import torch

from discdiff.nn import TransformerConfig

__all__ = ["PromptDropped", "batch_conditions", "check_labels", "conditioning_record", "drop_labels",
           "init_weights_from", "label_names_of", "scored_positions", "with_dropped_prompts"]


def drop_labels(labels: torch.Tensor, p_drop: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``labels`` [B] with each replaced by the null label ``num_classes`` with probability ``p_drop``
    (one uniform per row from ``generator``), so one network learns p(x | c) and p(x)."""
    if p_drop <= 0:
        return labels
    u = torch.rand(labels.shape, generator=generator, device=generator.device).to(labels.device)
    return torch.where(u < p_drop, torch.full_like(labels, num_classes), labels)


def batch_conditions(batch, rows: slice, cfg, seed: int, device) -> dict:
    """The extra loss arguments of one micro-batch (rows of ``batch``): its ``loss_mask`` (prompt-response
    pairs) and its labels, each dropped to the null label with probability cfg.condition_dropout; on pairs,
    ``dropped_prompt`` [b, L]: the prompt positions of the rows whose prompt is dropped (with probability
    cfg.condition_dropout; ``with_dropped_prompts`` shows them as MASK). One generator seeded by ``seed``
    (trainer stream COND of this step and micro-batch) draws both."""
    extra = {}
    gen = torch.Generator().manual_seed(seed)
    if getattr(batch, "loss_mask", None) is not None:
        extra["loss_mask"] = loss_mask = batch.loss_mask[rows].to(device)
        if cfg.condition_dropout > 0:
            dropped = torch.rand(loss_mask.shape[0], generator=gen) < cfg.condition_dropout  # [b]
            extra["dropped_prompt"] = dropped.to(device)[:, None] & ~loss_mask & batch.mask[rows].to(device)
    if cfg.model.num_classes is not None:
        extra["label"] = drop_labels(batch.labels[rows], cfg.condition_dropout, cfg.model.num_classes, gen).to(device)
    return extra


class PromptDropped:
    """``model`` with the ``dropped`` [B, L] positions of its input shown as MASK: a dropped prompt (LLaDA's
    unconditional branch: the prompt replaced by mask tokens, its positions kept). ``module`` is the model,
    so ``discdiff.model_call`` reads its signature, time-freedom and config through this wrapper."""

    def __init__(self, model, dropped: torch.Tensor, mask_id: int):
        self.module, self.dropped, self.mask_id = model, dropped, mask_id

    def __call__(self, x_t: torch.Tensor, sigma_bar: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.module(torch.where(self.dropped, self.mask_id, x_t), sigma_bar, **kwargs)


def with_dropped_prompts(model, extra: dict, diffusion):
    """The model a micro-batch trains: ``model`` itself, or ``PromptDropped`` (MASK of ``diffusion``'s graph)
    when ``extra`` (popped here) holds a ``dropped_prompt`` mask."""
    dropped = extra.pop("dropped_prompt", None)
    if dropped is None or not bool(dropped.any()):
        return model
    return PromptDropped(model, dropped, diffusion.graph.mask_id)


def scored_positions(batch) -> torch.Tensor:
    """[B, L] the positions the loss counts: the loss mask of prompt-response pairs, else the real tokens."""
    return batch.mask if getattr(batch, "loss_mask", None) is None else batch.loss_mask


def label_names_of(dataset) -> list[str] | None:
    """The label names a dataset's token file records (Fashion-MNIST: t-shirt ... ankle-boot), else None."""
    return getattr(getattr(dataset, "data", None), "label_names", None)


def check_labels(num_classes: int | None, dataset, p_drop: float, diffusion=None,
                 block_size: int | None = None) -> None:
    """A class-conditional model needs labelled data whose labels fit; dropout needs labels or prompts (a
    dropped prompt is masked: an absorbing-graph, full-sequence diffusion model)."""
    labels = getattr(getattr(dataset, "data", None), "labels", None)
    prompts = getattr(getattr(dataset, "data", None), "prompt_lengths", None) is not None
    if num_classes is None:
        if p_drop > 0 and not prompts:
            raise ValueError("condition_dropout drops class labels (set model.num_classes, labelled data) or the "
                             "prompts of prompt-response pairs; this data has neither")
        if p_drop > 0 and (getattr(getattr(diffusion, "graph", None), "mask_id", None) is None or block_size):
            raise ValueError("condition_dropout on prompt-response pairs masks the dropped prompt: it needs a "
                             "full-sequence diffusion model on the absorbing graph (not the AR baseline, a uniform "
                             "graph or model.block_size)")
        return
    if labels is None:
        raise ValueError(f"model.num_classes={num_classes} needs labelled data (e.g. fashion-mnist); "
                         "this training split has no labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"the data's labels lie in [{labels.min()}, {labels.max()}]; model.num_classes="
                         f"{num_classes} must exceed them")


def conditioning_record(num_classes: int | None, p_drop: float, dataset) -> dict | None:
    """The `conditioning` entry of a pretrained config: what `sample --label/--guidance` checks against
    (None for an unconditional model: nothing to record)."""
    prompts = getattr(getattr(dataset, "data", None), "prompt_lengths", None) is not None
    if num_classes is None and not prompts:
        return None
    names = label_names_of(dataset) if num_classes is not None else None
    return {"num_classes": num_classes, "label_names": names, "condition_dropout": p_drop,
            "prompt_response": prompts}


# An autoregressive (causal) network may start a diffusion model: a block-diffusion one (SDAR, Fast-dLLM v2) or a
# full-sequence one (DiffuLLaMA, Dream: "adaptation from AR"). The weights are the same tensors; only the
# attention pattern changes (causal -> bidirectional, within a block or everywhere), and the id V row of the
# embedding, BOS in the AR model, becomes the mask token's.
AR_TO_BLOCKS = ("causal", "block_size")


def init_weights_from(model: torch.nn.Module, path) -> str:
    """Load the weights of the model at ``path`` (anything ``from_pretrained`` accepts) into ``model``,
    after checking that the two architectures match (an AR model may start a diffusion model: see AR_TO_BLOCKS);
    returns where they came from. Raises ValueError naming the fields that differ."""
    from .recipe import from_pretrained

    source = from_pretrained(path)
    mine, theirs = model.config, getattr(source.model, "config", None)
    if not isinstance(theirs, TransformerConfig):
        raise ValueError(f"--init-from {path}: not a discdiff DiffusionTransformer")
    free = ("dropout",) + (AR_TO_BLOCKS if theirs.causal and not mine.causal else ())
    differ = [f"{k} {getattr(theirs, k)!r} vs {getattr(mine, k)!r}" for k in vars(mine)
              if k not in free and getattr(mine, k) != getattr(theirs, k, None)]
    if differ:
        raise ValueError(f"--init-from {path}: its architecture differs from this config's ({'; '.join(differ)}); "
                         "set the model: section (and data.context / vocabulary) to match it")
    model.load_state_dict(source.model.state_dict())
    return str(source.source)
