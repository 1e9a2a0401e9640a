"""Class labels as one learned vector per sequence, with a null label for classifier-free guidance."""

from __future__ import annotations

import torch
from torch import nn


class LabelEmbedding(nn.Module):
    """``num_classes + 1`` learned vectors of ``width``: labels 0..num_classes-1 and the null label
    ``num_classes`` (the unconditional branch, trained by dropping the label with probability p_drop).

    ``forward(label [B] or None, B) -> (B, width)``: None means the null label for every row.
    """

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, width)

    def forward(self, label: torch.Tensor | None, batch: int) -> torch.Tensor:
        if label is None:
            return self.table.weight[self.num_classes].expand(batch, -1)  # (B, width)
        if label.shape != (batch,) or label.is_floating_point() or label.dtype == torch.bool:
            raise ValueError(f"label must be an integer tensor of shape ({batch},), got {label.dtype} "
                             f"{tuple(label.shape)}")
        if label.device.type == "cpu" and label.numel():
            low, high = int(label.min()), int(label.max())
            if low < 0 or high > self.num_classes:
                raise ValueError(f"labels must lie in [0, {self.num_classes - 1}] (or {self.num_classes}, the null "
                                 f"label), got [{low}, {high}]")
        return self.table(label.to(self.table.weight.device).long())  # (B, width)
