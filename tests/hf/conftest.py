import pytest

pytest.importorskip("transformers")  # the optional `hf` extra (installed with `dev`)
