"""What training adds for conditional models: label dropout (the null label that classifier-free guidance
contrasts with), the conditioning record a pretrained directory keeps, and starting a new run from the
weights of another model (``init_from``, supervised fine-tuning)."""

from __future__ import annotations

import torch

from discdiff.nn import TransformerConfig

__all__ = ["batch_conditions", "check_labels", "conditioning_record", "drop_labels", "init_weights_from",
           "label_names_of", "scored_positions"]


def drop_labels(labels: torch.Tensor, p_drop: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``labels`` [B] with each replaced by the null label ``num_classes`` with probability ``p_drop``
    (one uniform per row from ``generator``), so one network learns p(x | c) and p(x)."""
    if p_drop <= 0:
        return labels
    u = torch.rand(labels.shape, generator=generator, device=generator.device).to(labels.device)
    return torch.where(u < p_drop, torch.full_like(labels, num_classes), labels)


def batch_conditions(batch, rows: slice, cfg, seed: int, device) -> dict:
    """The extra loss arguments of one micro-batch (rows of ``batch``): its ``loss_mask`` (prompt-response
    pairs) and its labels, each dropped to the null label with probability cfg.condition_dropout (one
    generator seeded by ``seed``: trainer stream COND of this step and micro-batch)."""
    extra = {}
    if getattr(batch, "loss_mask", None) is not None:
        extra["loss_mask"] = batch.loss_mask[rows].to(device)
    if cfg.model.num_classes is not None:
        gen = torch.Generator().manual_seed(seed)
        extra["label"] = drop_labels(batch.labels[rows], cfg.condition_dropout, cfg.model.num_classes, gen).to(device)
    return extra


def scored_positions(batch) -> torch.Tensor:
    """[B, L] the positions the loss counts: the loss mask of prompt-response pairs, else the real tokens."""
    return batch.mask if getattr(batch, "loss_mask", None) is None else batch.loss_mask


def label_names_of(dataset) -> list[str] | None:
    """The label names a dataset's token file records (Fashion-MNIST: t-shirt ... ankle-boot), else None."""
    return getattr(getattr(dataset, "data", None), "label_names", None)


def check_labels(num_classes: int | None, dataset, p_drop: float) -> None:
    """A class-conditional model needs labelled data whose labels fit; dropout needs such a model."""
    labels = getattr(getattr(dataset, "data", None), "labels", None)
    if num_classes is None:
        if p_drop > 0:  # prompts are never dropped in training (yet): guidance would contrast with an untrained branch
            raise ValueError("condition_dropout drops class labels: set model.num_classes (labelled data); "
                             "dropping prompts in supervised fine-tuning is not supported")
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


# An autoregressive (causal) network may start a block-diffusion model (SDAR, Fast-dLLM v2): the weights are the
# same tensors; only the attention pattern changes (causal -> bidirectional within a block, causal across), and
# the id V row of the embedding, BOS in the AR model, becomes the mask token's.
AR_TO_BLOCKS = ("causal", "block_size")


def init_weights_from(model: torch.nn.Module, path) -> str:
    """Load the weights of the model at ``path`` (anything ``from_pretrained`` accepts) into ``model``,
    after checking that the two architectures match (an AR model may start a block model: see AR_TO_BLOCKS);
    returns where they came from. Raises ValueError naming the fields that differ."""
    from .recipe import from_pretrained

    source = from_pretrained(path)
    mine, theirs = model.config, getattr(source.model, "config", None)
    if not isinstance(theirs, TransformerConfig):
        raise ValueError(f"--init-from {path}: not a discdiff DiffusionTransformer")
    free = ("dropout",) + (AR_TO_BLOCKS if theirs.causal and mine.block_size is not None else ())
    differ = [f"{k} {getattr(theirs, k)!r} vs {getattr(mine, k)!r}" for k in vars(mine)
              if k not in free and getattr(mine, k) != getattr(theirs, k, None)]
    if differ:
        raise ValueError(f"--init-from {path}: its architecture differs from this config's ({'; '.join(differ)}); "
                         "set the model: section (and data.context / vocabulary) to match it")
    model.load_state_dict(source.model.state_dict())
    return str(source.source)
