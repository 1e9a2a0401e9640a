import pytest
import torch

from discdiff.exact import ToyDistribution


@pytest.fixture(autouse=True)
def _threads():
    # Unit tests move small tensors: one thread is as fast, and immune to the 5-40x slowdowns that
    # two-thread OpenMP barriers suffer when another process shares the two cores.
    torch.set_num_threads(1)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def toy():
    """A random distribution over the 27 sequences of length 3 from 3 tokens (entropy ~3.07 nats)."""
    return ToyDistribution.random(vocab_size=3, length=3, generator=torch.Generator().manual_seed(0))
