import torch

from discdiff.exact import ToyDistribution, sequence_index


def total_variation(samples: torch.Tensor, probs: torch.Tensor, num_states: int) -> float:
    """TV between the empirical law of ``samples`` [N, L] and ``probs`` over all num_states^L sequences."""
    counts = torch.bincount(sequence_index(samples, num_states), minlength=len(probs)).double()
    return 0.5 * (counts / len(samples) - probs).abs().sum().item()


def toy():
    return ToyDistribution.random(vocab_size=3, length=3, generator=torch.Generator().manual_seed(0))
