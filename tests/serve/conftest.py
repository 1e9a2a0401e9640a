"""Fixtures for the web demo: tiny checkpoints of each modality (helpers live in serve_helpers.py)."""

from pathlib import Path

import pytest
from serve_helpers import TEXT, make_checkpoint

from discdiff.data import CharTokenizer, DNATokenizer, PixelTokenizer, ProteinTokenizer
from discdiff.serve import Engine, Limits
from discdiff.training import DiffusionConfig, ModelConfig


@pytest.fixture(scope="session")
def char_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "char", CharTokenizer.from_texts([TEXT]), 64)


@pytest.fixture(scope="session")
def protein_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "protein", ProteinTokenizer(), 48)


@pytest.fixture(scope="session")
def dna_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "dna", DNATokenizer(), 48)


@pytest.fixture(scope="session")
def dna_records_checkpoint(tmp_path_factory) -> Path:
    """A random DNA model saved as if trained on EOS-padded records of body length 3 or 5 (context 16)."""
    layout = {"padding": "eos", "eos_id": 2, "bos_id": 1, "pad_id": 0, "length_counts": [0, 0, 0, 4, 0, 6]}
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "dna-records", DNATokenizer(), 16, records=layout)


@pytest.fixture(scope="session")
def pixel_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "pixels", PixelTokenizer(8, 6, 6), 36)


@pytest.fixture(scope="session")
def uniform_checkpoint(tmp_path_factory) -> Path:
    diffusion = DiffusionConfig(graph="uniform", parameterization="score", schedule="geometric")
    model_cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, cond_dim=16, time_conditioning=True)
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "uniform", CharTokenizer.from_texts([TEXT]), 32,
                           diffusion, model_cfg)


@pytest.fixture
def char_engine(char_checkpoint) -> Engine:
    return Engine.load(char_checkpoint, Limits(max_steps=256, max_samples=3))
