import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_threads):
    """Tiny models: one thread is faster, and on a shared 2-core machine two threads can run 3-100x slower."""
    torch.set_num_threads(1)
