import pytest
from train_helpers import tiny_config


@pytest.fixture
def tiny(tmp_path):
    """tiny(*overrides) -> a TrainConfig of a tiny model on tiny synthetic data, writing into tmp_path."""
    return lambda *extra: tiny_config(tmp_path, *extra)
