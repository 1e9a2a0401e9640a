"""Every seed of a run derives from one integer through splitmix64 (Steele, Lea & Flood 2014; Vigna's
reference C code). A leaf module: it imports nothing of discdiff, so data, training and the core may all use it.

splitmix64's generator adds the golden gamma G = 0x9E3779B97F4A7C15 to its state and returns the finalizer

    fmix(z) = z3 ^ (z3 >> 31),  z2 = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9,  z3 = (z2 ^ (z2 >> 27)) * 0x94D049BB133111EB

(all mod 2^64). From seed 0 its outputs are fmix(G), fmix(2G), ... = 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, ...

    seed_for(global_seed, step, stream, index)   # x = G; for each value v: x = fmix(x ^ v); return x >> 1
    splitmix64_array(seed, indices)              # fmix(seed ^ index) per index, vectorised (uint64)

Nearby inputs give unrelated seeds, and a seed never depends on the process rank alone (pass it as one value).
"""

from __future__ import annotations

import numpy as np

__all__ = ["GOLDEN_GAMMA", "seed_for", "seed_global_generators", "splitmix64", "splitmix64_array"]

GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def splitmix64(z: int) -> int:
    """splitmix64's finalizer fmix(z) of a 64-bit integer (the generator's output for state z)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _C1) & _MASK64
    z = ((z ^ (z >> 27)) * _C2) & _MASK64
    return z ^ (z >> 31)


def seed_for(*values: int) -> int:
    """A 63-bit seed from integers, e.g. seed_for(global_seed, step, stream, index): x = G, then
    x = fmix(x ^ v) for each value (negative values as their 64-bit two's complement); returns x >> 1."""
    x = GOLDEN_GAMMA
    for v in values:
        x = splitmix64(x ^ (int(v) & _MASK64))
    return x >> 1


def splitmix64_array(seed: int, indices: np.ndarray) -> np.ndarray:
    """fmix(seed ^ index) for every index, as uint64 (one independent hash per example)."""
    with np.errstate(over="ignore"):
        x = np.uint64(int(seed) & _MASK64) ^ indices.astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_C1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_C2)
        return x ^ (x >> np.uint64(31))


def seed_global_generators(seed: int, device=None) -> None:
    """Seed torch's, numpy's and python's global generators (and CUDA's on a CUDA device) from one seed.

    torch.manual_seed without its per-call probing of every accelerator backend (~1 ms each). numpy's and
    python's are seeded too although training draws nothing from them: a checkpoint stores their states, and
    OS-entropy states would make a resumed run's RNG files differ from an uninterrupted run's.
    """
    import random

    import numpy as np
    import torch

    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.manual_seed(seed)
