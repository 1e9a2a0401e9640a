"""Bad inputs to the library, run in a child process (python benchmarks/_reliability_lib.py [--quick]) that
prints one JSON line per case. Correct: a ValueError whose message is one non-empty line ("clear"). Any other
exception is "traceback", a multi-line or empty ValueError "vague", a normal return "silent", and a call that
runs past 30 s "hang".
"""

from __future__ import annotations

import json
import resource
import signal
import sys

import torch

import discdiff as dd
from discdiff.nn import DiffusionTransformer, TransformerConfig

V, L, B = 8, 16, 2  # vocabulary, model length, batch
NAN = float("nan")
MEMORY_LIMIT = 6 << 30


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def build():
    torch.manual_seed(0)
    graph, sched = dd.Absorbing(vocab_size=V), dd.LogLinear(eps=1e-3)
    model = DiffusionTransformer(TransformerConfig(num_states=V + 1, d_model=32, n_layers=1, n_heads=2,
                                                   max_len=L)).eval()
    return graph, sched, dd.Diffusion(graph, sched, parameterization="denoiser"), model


def cases() -> dict:
    g, sched, diff, model = build()
    x0 = torch.randint(0, V, (B, L))
    return {**_construction_cases(g, sched, x0), **_loss_cases(diff, model, x0), **_sample_cases(diff, model)}


def _construction_cases(g, sched, x0) -> dict:
    sb = torch.ones(B)
    rate = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
    return {
        "Absorbing(vocab_size=0)": lambda: dd.Absorbing(vocab_size=0),
        "Absorbing(vocab_size=-3)": lambda: dd.Absorbing(vocab_size=-3),
        "Absorbing(vocab_size=2.5)": lambda: dd.Absorbing(vocab_size=2.5),
        "Absorbing(vocab_size='8')": lambda: dd.Absorbing(vocab_size="8"),
        "Uniform(vocab_size=0)": lambda: dd.Uniform(vocab_size=0),
        "DenseGraph(3x4 matrix)": lambda: dd.DenseGraph(torch.ones(3, 4)),
        "DenseGraph(negative off-diagonal)": lambda: dd.DenseGraph(-rate),
        "DenseGraph(columns not summing to 0)": lambda: dd.DenseGraph(rate + 1),
        "DenseGraph(NaN entries)": lambda: dd.DenseGraph(torch.full((2, 2), NAN)),
        "DenseGraph(3-D tensor)": lambda: dd.DenseGraph(torch.zeros(2, 2, 2)),
        "LogLinear(eps=0)": lambda: dd.LogLinear(eps=0),
        "LogLinear(eps=-1)": lambda: dd.LogLinear(eps=-1),
        "LogLinear(eps=2)": lambda: dd.LogLinear(eps=2),
        "LogLinear(eps=nan)": lambda: dd.LogLinear(eps=NAN),
        "Geometric(sigma_min=-1)": lambda: dd.Geometric(sigma_min=-1),
        "Geometric(sigma_min=10, sigma_max=1)": lambda: dd.Geometric(sigma_min=10, sigma_max=1),
        "Geometric(sigma_max=nan)": lambda: dd.Geometric(sigma_max=NAN),
        "Diffusion(parameterization='bogus')": lambda: dd.Diffusion(g, sched, parameterization="bogus"),
        "Diffusion(graph='notagraph')": lambda: dd.Diffusion("notagraph", sched),
        "Diffusion(schedule='notaschedule')": lambda: dd.Diffusion(g, "notaschedule"),
        "transition_probs(ids >= vocab)": lambda: g.transition_probs(x0 + V + 5, sb[:, None]),
        "transition_probs(negative ids)": lambda: g.transition_probs(-x0 - 1, sb[:, None]),
        "transition_probs(sigma_bar=-1)": lambda: g.transition_probs(x0, -sb[:, None]),
        "transition_probs(sigma_bar=nan)": lambda: g.transition_probs(x0, sb[:, None] * NAN),
        "transition_probs(float ids)": lambda: g.transition_probs(x0.float(), sb[:, None]),
        "sample_transition(sigma_bar of the wrong shape)": lambda: g.sample_transition(x0, torch.ones(B + 1)),
        "sample_prior(shape with -1)": lambda: g.sample_prior((B, -1)),
        "schedule(t=nan)": lambda: sched(torch.tensor([NAN])),
        "schedule(t=1.5)": lambda: sched(torch.tensor([1.5])),
        "schedule(t=-0.5)": lambda: sched(torch.tensor([-0.5])),
    }


def _loss_cases(diff, model, x0) -> dict:
    def loss(x, **kw):
        return lambda: diff.loss(model, x, **kw)

    return {
        "loss(float x0)": loss(x0.float()),
        "loss(1-D x0)": loss(x0[0]),
        "loss(3-D x0)": loss(x0[:, :, None]),
        "loss(ids >= vocab)": loss(x0 + V + 1),
        "loss(negative ids)": loss(-x0 - 1),
        "loss(x0 holding the MASK id)": loss(torch.full((B, L), V)),
        "loss(objective='bogus')": loss(x0, objective="bogus"),
        "loss(longer than the model's max_len)": loss(torch.randint(0, V, (B, 4 * L))),
        "loss(t of the wrong shape)": loss(x0, t=torch.rand(B + 3)),
        "loss(t=nan)": loss(x0, t=torch.full((B,), NAN)),
        "loss(t=-1)": loss(x0, t=torch.full((B,), -1.0)),
        "loss(padding_mask of ints)": loss(x0, padding_mask=torch.ones(B, L, dtype=torch.long)),
        "loss(bool x0)": loss(x0 > 3),
        "loss(model returning too few values)": lambda: diff.loss(lambda x, s: torch.zeros(*x.shape, 3), x0),
    }


def _sample_cases(diff, model) -> dict:
    def sample(*args, **kw):
        kw.setdefault("steps", 4)
        return lambda: diff.sample(model, *(args or (B, L)), **kw)

    return {
        "sample(num_samples=0)": sample(0, L),
        "sample(num_samples=-1)": sample(-1, L),
        "sample(num_samples=2.5)": sample(2.5, L),
        "sample(num_samples=10**8)": sample(10**8, L),
        "sample(length=0)": sample(B, 0),
        "sample(length=-3)": sample(B, -3),
        "sample(length beyond max_len)": sample(B, 4 * L),
        "sample(sampler='bogus')": sample(sampler="bogus"),
        "sample(steps=0)": sample(steps=0),
        "sample(steps=-1)": sample(steps=-1),
        "sample(steps=2.5)": sample(steps=2.5),
        "sample(temperature=0)": sample(temperature=0),
        "sample(temperature=-1)": sample(temperature=-1),
        "sample(temperature=nan)": sample(temperature=NAN),
        "sample(top_k=0)": sample(top_k=0),
        "sample(top_p=0)": sample(top_p=0),
        "sample(top_p=1.5)": sample(top_p=1.5),
        "sample(top_p=nan)": sample(top_p=NAN),
        "sample(generator='seed')": sample(generator="seed"),
        "sample(device='bogus')": sample(device="bogus"),
        "sample(guidance=2 without a condition)": sample(guidance=2.0),
        "sample(guidance=nan)": sample(guidance=NAN),
        "sample(an unknown option)": sample(bogus_option=1),
        "sample(confidence, threshold=0)": sample(sampler="confidence", threshold=0.0),
        "sample(confidence, threshold=1.5)": sample(sampler="confidence", threshold=1.5),
        "sample(confidence, block_length=0)": sample(sampler="confidence", block_length=0),
        "sample(euler on a denoiser-parameterized model, t_end=2)": sample(sampler="euler", t_end=2.0),
    }


def classify(call) -> tuple[str, str]:
    signal.alarm(30)
    try:
        call()
        return "silent", ""
    except Hang:
        return "hang", "ran past 30 s"
    except ValueError as e:
        text = str(e).strip()
        return ("clear" if text and "\n" not in text else "vague"), text.splitlines()[0][:300] if text else ""
    except Exception as e:  # noqa: BLE001 - any other exception is the finding
        return "traceback", f"{type(e).__name__}: {str(e).strip().splitlines()[0][:280] if str(e).strip() else ''}"
    finally:
        signal.alarm(0)


def main() -> None:
    quick = "--quick" in sys.argv
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))  # a runaway allocation fails fast
    signal.signal(signal.SIGALRM, _alarm)
    torch.set_num_threads(1)
    table = cases()
    names = list(table)[:: 8 if quick else 1]
    for name in names:
        outcome, message = classify(table[name])
        print(json.dumps({"case": name, "outcome": outcome, "message": message}), flush=True)


if __name__ == "__main__":
    main()
