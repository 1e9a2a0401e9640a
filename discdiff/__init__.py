"""discdiff: discrete diffusion models on arbitrary finite state spaces.

    import discdiff as dd
    g = dd.Absorbing(vocab_size=V)                 # or dd.Uniform(V), dd.DenseGraph(Q)
    diff = dd.Diffusion(g, dd.LogLinear(), parameterization="denoiser")
    ar = dd.Autoregressive(vocab_size=V)           # the left-to-right baseline: same loss / nll / sample
    loss = diff.loss(model, x0).mean()             # nats per sequence; an NLL bound
"""

from . import losses
from .autoregressive import Autoregressive
from .blocks import BlockDiffusion
from .dense_graph import DenseGraph
from .diffusion import Diffusion, NLLEstimate, stratified_uniform
from .graphs import Absorbing, Graph, Uniform
from .parameterization import get_parameterization
from .schedules import Cosine, Geometric, Linear, LogLinear, Noise, Schedule

__version__ = "0.1.0"

# transformers' AutoConfig / AutoModel learn model_type "discdiff" when transformers' Auto layer loads
# (discdiff/hf_hook.py): `import discdiff` itself never imports transformers.
from .hf_hook import install as _install_transformers_hook  # noqa: E402

_install_transformers_hook()

__all__ = [
    "Absorbing",
    "Autoregressive",
    "BlockDiffusion",
    "Cosine",
    "DenseGraph",
    "Diffusion",
    "Geometric",
    "Graph",
    "Linear",
    "LogLinear",
    "NLLEstimate",
    "Noise",
    "Schedule",
    "Uniform",
    "get_parameterization",
    "losses",
    "stratified_uniform",
]
