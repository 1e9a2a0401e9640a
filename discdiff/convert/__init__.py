"""Importers for published checkpoints of other codebases: SEDD and MDLM, into discdiff pretrained/ directories.

    from discdiff.convert import convert_sedd, convert_mdlm
    convert_sedd("downloads/sedd-small", "models/sedd-small")    # or: discdiff convert sedd SRC OUT
    convert_mdlm("downloads/mdlm-owt", "models/mdlm-owt")        # or: discdiff convert mdlm SRC OUT

The converted model reproduces the original network's outputs (tests/convert/ checks it against outputs of
their own code to 1e-5); docs/convert.md says what is and is not carried over.
"""

from .mdlm import convert_mdlm
from .sedd import convert_sedd

__all__ = ["convert_mdlm", "convert_sedd"]
