"""discdiff.seeding against splitmix64's published reference outputs, and the loader and trainer share it."""

from pathlib import Path

import numpy as np
import torch

from discdiff.data import TokenLoader, WindowDataset
from discdiff.data.packing import TokenFile
from discdiff.seeding import GOLDEN_GAMMA, seed_for, splitmix64, splitmix64_array

M64 = (1 << 64) - 1
# Vigna's splitmix64.c seeded with x = 0 (state += 0x9E3779B97F4A7C15, then the finalizer): its first outputs.
REFERENCE = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_finalizer_reproduces_the_reference_generator():
    assert [splitmix64(k * GOLDEN_GAMMA & M64) for k in (1, 2, 3)] == REFERENCE


def test_seed_for_is_the_chained_finalizer_shifted_to_63_bits():
    assert seed_for() == GOLDEN_GAMMA >> 1
    assert seed_for(0) == REFERENCE[0] >> 1  # fmix(G ^ 0)
    assert seed_for(GOLDEN_GAMMA ^ (2 * GOLDEN_GAMMA & M64)) == REFERENCE[1] >> 1  # fmix(2G)
    assert seed_for(0, REFERENCE[0] ^ (3 * GOLDEN_GAMMA & M64)) == REFERENCE[2] >> 1  # fmix(fmix(G) ^ ...) = fmix(3G)
    assert seed_for(-1) == splitmix64(GOLDEN_GAMMA ^ M64) >> 1  # negatives as 64-bit two's complement
    assert all(0 <= seed_for(7, i) < 2**63 for i in range(100))


def test_vectorised_hash_matches_the_scalar_one():
    indices = np.array([0, 1, 2, 12345, 2**40])
    expected = [splitmix64(99 ^ int(i)) for i in indices]
    assert splitmix64_array(99, indices).tolist() == expected


def test_the_trainer_and_the_loader_use_the_one_definition():
    from discdiff.training.distributed import seed_for as training_seed_for

    assert training_seed_for is seed_for
    tokens = np.arange(64, dtype=np.int64)
    file = TokenFile(Path("<memory>"), tokens, np.array([0, 64]), None, 64, "stream", Path("."))
    ds = WindowDataset(file, context=4, random_offset=False)
    batch = next(iter(TokenLoader(ds, batch_size=len(ds), seed=5)))
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed_for(5, 0)))
    assert batch.tokens[:, 0].tolist() == (order * 4).tolist()  # epoch 0 shuffles with seed_for(seed, 0)
