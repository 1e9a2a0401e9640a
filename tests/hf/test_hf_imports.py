"""When the Auto factories learn model_type "discdiff": in either import order, and never by `import discdiff`
importing transformers (each case in a fresh interpreter, since imports are process-wide)."""

import os
import subprocess
import sys

import pytest
from hf_helpers import save_tiny

from discdiff.training import ModelConfig


def _python(code: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_import_discdiff_does_not_import_transformers():
    assert _python("import sys, discdiff, discdiff.hf; print(sorted(m for m in sys.modules "
                   "if m.split('.')[0] == 'transformers'))") == "[]"


def test_autoconfig_alone_stays_light():
    """Registering the config does not pull in the model layer (PreTrainedModel costs seconds)."""
    out = _python("import sys, discdiff\nfrom transformers import AutoConfig\n"
                  "print(AutoConfig.for_model('discdiff').__class__.__name__,\n"
                  "      'transformers.modeling_utils' in sys.modules)")
    assert out == "DiscdiffConfig False"


@pytest.mark.parametrize("order", ["discdiff first", "transformers first"])
def test_automodel_loads_in_either_import_order(tmp_path, order):
    save_tiny(tmp_path / "m", ModelConfig(d_model=16, n_layers=1, n_heads=2))
    imports = {"discdiff first": "import discdiff\nimport transformers",
               "transformers first": "import transformers\nfrom transformers import AutoModel, AutoConfig\n"
                                     "import discdiff"}[order]
    path = str(tmp_path / "m")
    out = _python(f"{imports}\nm = transformers.AutoModel.from_pretrained({path!r})\n"
                  f"print(type(m).__name__, transformers.AutoConfig.from_pretrained({path!r}).model_type)")
    assert out.splitlines()[-1] == "DiscdiffModel discdiff"
