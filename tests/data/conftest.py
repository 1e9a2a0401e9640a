from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture
def fixtures() -> Path:
    """Small hand-made files shipped with the tests (see tests/fixtures/data/README.md)."""
    return FIXTURES
