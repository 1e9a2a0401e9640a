"""The model side of the demo, free of any web code: one checkpoint, the limits that keep a server
alive, request validation, and a generation that reports every sampler step as it happens.

    engine = Engine.load("runs/sc/pretrained", Limits(max_steps=256))
    job = engine.parse({"template": "To be, or {3} to be", "sampler": "ancestral", "steps": 32})
    engine.run(job, emit=lambda kind, data: print(kind, data), check=lambda: None)

``run`` passes a ``callback`` to ``Diffusion.sample``, so each state reaches ``emit`` the moment the
sampler produces it, as the positions that changed. ``check`` is called before every step; it raises
``Stopped`` to end a generation (timeout, client gone).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from discdiff.autoregressive import Autoregressive
from discdiff.data.template import TemplateError, template_ids
from discdiff.sampling import (
    OPTIONS,
    SAMPLERS,
    check_request_option,
    default_record_sampler,
    default_sampler,
    infill_rows,
    infill_template,
)
from discdiff.seeding import seed_for

from .display import EXAMPLES, MODALITIES, token_strings
from .limits import Limits, RequestError, Stopped, check_blocks
from .records import RecordView, request_lengths

__all__ = ["Engine", "Job", "Limits", "RequestError", "Stopped"]

@dataclass
class Job:
    """A validated request."""

    sampler: str
    steps: int
    num_samples: int
    ids: list[int | None]  # the template: None at blanks
    seed: int
    options: dict = field(default_factory=dict)  # temperature / top_k / top_p
    extras: dict = field(default_factory=dict)  # sampler-specific (confidence: threshold, block_length)
    label: int | None = None  # the class of a class-conditional model
    prompts: list[list[int | None]] | None = None  # several prompts: one template per prompt (ids = the first)
    record_lengths: list[int] | None = None  # a record model's body length per row (length-first), else None

    @property
    def length(self) -> int:
        return len(self.ids)


# name -> (type check, description): the request fields that are not sampler options. The sampler
# options a request may set are the rows of discdiff.sampling.OPTIONS marked `web`.
_FIELDS: dict[str, tuple[type | tuple, str]] = {
    "template": (str, "a string"),
    "length": (int, "an integer or null"),
    "num_samples": (int, "an integer"),
    "seed": (int, "an integer or null"),
    "label": ((int, str), "a class name, an integer or null"),
    "prompts": (list, "a list of strings (prompts of different lengths, one batch; needs a length)"),
    "record_length": ((int, str), "an integer, \"auto\" or null (record models: the body length)"),
}
_SAMPLER_FIELDS = [name for name, opt in OPTIONS.items() if opt.web]
# the options every sampler reads go to Job.options; those of one sampler (confidence's) to Job.extras
_SHARED = [name for name in _SAMPLER_FIELDS if name not in ("sampler", "steps") and len(OPTIONS[name].samplers) > 1]


class Engine:
    """A loaded diffusion checkpoint plus the limits of the server that shows it. ``records``: the saved record
    layout (a config's ``records``) of a model trained with data.records=eos, sampled as records (records.py)."""

    def __init__(self, model, diffusion, tokenizer, limits: Limits | None = None, *, name: str = "model",
                 device: str | torch.device = "cpu", context: int | None = None, conditioning: dict | None = None,
                 records: dict | None = None):
        if diffusion is None or isinstance(diffusion, Autoregressive):
            raise ValueError("the demo shows diffusion models; this checkpoint is the autoregressive baseline")
        self.model, self.diffusion, self.tokenizer = model, diffusion, tokenizer
        self.graph = diffusion.graph
        self.device = torch.device(device)
        self.name = name
        self.conditioning = conditioning or {"num_classes": getattr(getattr(model, "config", None), "num_classes",
                                                                    None)}
        self.limits = dataclasses.replace(limits or Limits()).validate()  # a copy: capped below, not the caller's
        model_max = getattr(getattr(model, "config", None), "max_len", None)
        if model_max is not None and self.limits.max_length > model_max:
            self.limits.max_length = int(model_max)
        self.context = min(context or self.limits.max_length, self.limits.max_length)
        kind = getattr(tokenizer, "kind", None)
        self.modality = MODALITIES.get(kind, "text") if tokenizer is not None else "ids"
        # a block model (BlockDiffusion) fills its blocks left to right, each with a masked sampler
        self.block_size = getattr(diffusion, "block_size", None)
        self.samplers = [n for n, s in SAMPLERS.items() if not (s.needs_mask and self.graph.mask_id is None)
                         and (s.needs_mask or self.block_size is None)]
        # a model trained on records (its saved `records` layout) samples them as `discdiff sample` does (records.py);
        # a block model fills its blocks as before (the record support is a full-sequence wrapper)
        self.records = RecordView.of(records, tokenizer, self.graph.num_clean_states) if self.block_size is None \
            else None
        self.default_sampler = (default_record_sampler(self.graph, diffusion.parameterization)[0] if self.records
                                else default_sampler(self.graph, diffusion.parameterization))
        if self.modality == "image":
            pixels = tokenizer.height * tokenizer.width
            if pixels > self.limits.max_length:
                raise ValueError(f"images of {pixels} pixels exceed the maximum length {self.limits.max_length}")

    @classmethod
    def load(cls, checkpoint: str | Path, limits: Limits | None = None, device: str = "cpu") -> Engine:
        """Rebuild a ``save_pretrained`` directory (or a run directory holding pretrained/)."""
        from discdiff.hf import load_pretrained as from_pretrained  # discdiff and transformers masked-LM dirs

        path = Path(checkpoint)
        if (path / "pretrained" / "config.json").is_file():
            path = path / "pretrained"
        pre = from_pretrained(path, device=device)
        name = path.parent.name if path.name == "pretrained" else path.name
        from discdiff.cli_condition import conditioning_of

        return cls(pre.model, pre.diffusion, pre.tokenizer, limits, name=name, device=device,
                   context=pre.config.get("context"), conditioning=conditioning_of(pre),
                   records=pre.config.get("records"))

    # ------------------------------------------------------------------ what the page needs

    def token_strings(self) -> list[str]:
        """How each id is drawn on the page (display.token_strings)."""
        return token_strings(self.tokenizer, self.modality, self.graph.num_clean_states)

    def examples(self) -> list[dict]:
        found = []
        for label, template, length in EXAMPLES[self.modality]:
            if length is None and template and self.records is not None:
                length = 64  # room after the template for the record's end
            if length is not None:
                length = min(length, self.context)
            try:
                if self.records is not None:  # after BOS
                    self._template(template, length or (None if template else self.context))
                else:
                    template_ids(template, self._text_tokenizer(), length or (None if template else self.context),
                                 self.limits.max_length)
            except ValueError:  # TemplateError, RequestError
                continue
            found.append({"label": label, "template": template, "length": length})
        return found

    def info(self) -> dict:
        tok = self.tokenizer
        image = None
        if self.modality == "image":
            image = {"height": tok.height, "width": tok.width, "levels": tok.levels}
        return {
            "name": self.name,
            "modality": self.modality,
            "vocab_size": self.graph.num_clean_states,
            "mask_id": self.graph.mask_id,
            "graph": type(self.graph).__name__,
            "parameterization": self.diffusion.parameterization.name,
            "parameters": sum(p.numel() for p in self.model.parameters()) if hasattr(self.model, "parameters")
            else None,
            "context": self.context,
            "block_size": self.block_size,  # None: full sequence; else steps are per block
            "tokens": self.token_strings(),
            "special_ids": sorted(getattr(tok, "special_tokens", {}).values()) if tok is not None else [],
            "image": image,
            "samplers": self.samplers,
            "limits": vars(self.limits),
            "defaults": {"sampler": self.default_sampler,
                         "steps": min(64, self.limits.max_steps), "num_samples": 1, "temperature": 1.0},
            "examples": self.examples(),
            "labels": self._label_names(),  # a class-conditional model's classes (the page's picker), else None
            "records": self.records.info() if self.records else None,  # special ids; the page's Record length
        }

    def _label_names(self) -> list[str] | None:
        num_classes = self.conditioning.get("num_classes")
        if num_classes is None:
            return None
        return list(self.conditioning.get("label_names") or [str(i) for i in range(num_classes)])

    # ------------------------------------------------------------------ validation

    def _text_tokenizer(self):
        return None if self.modality in ("image", "ids") else self.tokenizer

    def parse(self, payload) -> Job:
        """Validate a request body (a dict from JSON); raises RequestError (400) naming the problem."""
        if not isinstance(payload, dict):
            raise RequestError("the request body must be a JSON object")
        unknown = sorted(set(payload) - set(_FIELDS) - set(_SAMPLER_FIELDS))
        if unknown:
            raise RequestError(f"unknown field {unknown[0]!r}; valid fields: {sorted([*_FIELDS, *_SAMPLER_FIELDS])}")
        for name, value in payload.items():
            if name not in _FIELDS:
                continue
            kind, described = _FIELDS[name]
            if value is None and "null" in described:
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                raise RequestError(f"{name} must be {described}, got {value!r}")
        lim = self.limits
        sampler = self._sampler(payload.get("sampler"), payload.get("record_length") is not None)
        options = self._options(sampler, payload, {"steps": lim.max_steps})
        steps = options.pop("steps", 64)
        num_samples = payload.get("num_samples", 1)
        if not 1 <= num_samples <= lim.max_samples:
            raise RequestError(f"num_samples must lie in [1, {lim.max_samples}], got {num_samples}")
        prompts = self._prompts(payload, num_samples)
        ids = prompts[0] if prompts else self._template(payload.get("template", ""), payload.get("length"))
        seed = payload.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif not 0 <= seed < 2**63:
            raise RequestError(f"seed must lie in [0, 2^63), got {seed}")
        rows = num_samples * (len(prompts) if prompts else 1)
        lengths = request_lengths(self.records, payload.get("record_length"), rows, len(ids), seed)
        extras = {k: options.pop(k) for k in list(options) if k not in _SHARED}
        if self.block_size is None:
            check_blocks(extras, steps, len(ids))
        else:  # steps are per block; the confidence sampler's blocks are the model's own
            try:
                self.diffusion.check_block_length(extras.get("block_length"))
            except ValueError as e:
                raise RequestError(str(e)) from None
        known = any(i is not None for i in ids)  # a prompt or infill: guidance's null branch may mask it
        label = self._label(payload.get("label"), options.get("guidance"), known)
        job = Job(sampler, steps, num_samples, ids, seed, options, extras, label, prompts, lengths)
        self._setup(job)  # a prompt over a record's pinned EOS is refused now, not mid-stream
        return job

    def _label(self, label, guidance: float | None, has_prompt: bool) -> int | None:
        """The request's class id (a name or an integer), and whether its guidance has a trained null branch."""
        from discdiff.cli_condition import check_null_guidance, label_id

        try:
            if label is not None:
                label = label_id(label, self.conditioning.get("num_classes"), self._label_names() or [], "label")
            check_null_guidance(self.conditioning, guidance or 0.0, "null", label, has_prompt, "guidance")
        except ValueError as e:
            raise RequestError(str(e)) from None
        return label

    def _randomness(self, seed: int, rows: int) -> dict:
        """Row i draws from seed_for(seed, i), for full-sequence and block samplers alike."""
        return {"seeds": [seed_for(seed, i) for i in range(rows)]}

    def _prompts(self, payload: dict, num_samples: int) -> list[list[int | None]] | None:
        """``prompts``: each a literal prefix, blanks up to ``length``; num_samples rows each."""
        prompts = payload.get("prompts")
        if prompts is None:
            return None
        if "template" in payload or not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise RequestError("prompts must be a non-empty list of non-empty strings, without a template")
        if len(prompts) * num_samples > self.limits.max_samples:
            raise RequestError(f"{len(prompts)} prompts x {num_samples} samples exceed {self.limits.max_samples} rows")
        if payload.get("length") is None:
            raise RequestError("prompts need a length (tokens per sample, prompt included)")
        literal = ["".join("\\" + c if c in "_{}\\" else c for c in p) for p in prompts]
        return [self._template(t, payload["length"]) for t in literal]

    def _sampler(self, sampler, length_first: bool = False) -> str:
        if sampler is None and self.records is not None:  # first_hitting unless EOS is pinned (length-first)
            return default_record_sampler(self.graph, self.diffusion.parameterization, length_first)[0]
        if sampler is None:
            return self.default_sampler
        if not isinstance(sampler, str):
            raise RequestError(f"sampler must be a string, got {sampler!r}")
        if sampler not in SAMPLERS:
            raise RequestError(f"unknown sampler {sampler!r}; choose one of {self.samplers}")
        if sampler not in self.samplers and self.block_size is not None:
            raise RequestError(f"a block model fills each block with a masked sampler: choose one of {self.samplers}")
        if sampler not in self.samplers:
            raise RequestError(f"sampler {sampler!r} needs an absorbing (masked) model; this one is "
                               f"{type(self.graph).__name__}: choose one of {self.samplers}")
        return sampler

    @staticmethod
    def _options(sampler: str, payload: dict, limits: dict) -> dict:
        """The sampler options of the request, checked against discdiff.sampling.OPTIONS and ``limits``
        (name -> the server's maximum)."""
        options = {}
        for name in _SAMPLER_FIELDS:
            if name == "sampler" or payload.get(name) is None:
                continue
            try:
                options[name] = check_request_option(name, payload[name], sampler, high=limits.get(name))
            except ValueError as e:
                raise RequestError(str(e)) from None
        return options

    def _template(self, template: str, length: int | None) -> list[int | None]:
        lim = self.limits
        if len(template) > 16 * lim.max_length:
            raise RequestError(f"the template is {len(template)} characters; at most {16 * lim.max_length}")
        if self.modality == "image":
            pixels = self.tokenizer.height * self.tokenizer.width
            if template.strip("_") or length not in (None, pixels):
                raise RequestError(f"image models draw whole {self.tokenizer.height}x{self.tokenizer.width} images: "
                                   "leave the template and the length empty")
            return [None] * pixels
        head = self.records.head() if self.records else []  # a record's BOS, pinned before the template
        if length is not None and not len(head) + 1 <= length <= lim.max_length:
            raise RequestError(f"length must lie in [{len(head) + 1}, {lim.max_length}], got {length}")
        try:
            return head + template_ids(template, self._text_tokenizer(), None if length is None else length - len(head),
                                       lim.max_length - len(head))
        except TemplateError as e:
            raise RequestError(f"template: {e}") from None

    # ------------------------------------------------------------------ generation

    def run(self, job: Job, emit: Callable[[str, dict], None], check: Callable[[], None]) -> None:
        """Sample ``job``, calling ``emit(kind, data)`` with kind "start" (the initial state), "step" (the
        positions that changed, model calls so far, seconds so far) after every sampler step, then "done"
        or "error". Blocking: call it from a worker thread. Never raises for a sampler failure."""
        def fail(message: str) -> None:
            try:
                emit("error", {"message": message})
            except Stopped:
                pass  # nobody is listening any more

        try:
            self._run(job, emit, check)
        except (Stopped, ValueError) as e:
            fail(str(e))
        except Exception as e:
            fail(f"internal error: {type(e).__name__}: {e}")
            raise  # the server logs it and stays up

    def _masked(self, x: torch.Tensor) -> list[int]:
        if self.graph.mask_id is None:
            return [0] * x.shape[0]
        return (x == self.graph.mask_id).sum(-1).tolist()

    def _setup(self, job: Job):
        """(model, condition) of a job: its template or prompts; a record model's BOS, support or pinned EOS."""
        rows = job.num_samples * (len(job.prompts) if job.prompts else 1)
        if job.prompts:  # several prompts in one batch: a Condition row each, every row its own seed
            template = infill_rows([p for p in job.prompts for _ in range(job.num_samples)])
        else:
            template = infill_template(job.ids)
        if self.records is None:
            return self.model, template
        return self.records.sampling(self.model, self.graph, template, rows, job.length, job.record_lengths)

    def _run(self, job: Job, emit, check) -> None:
        L = job.length
        model, condition = self._setup(job)
        B = job.num_samples * (len(job.prompts) if job.prompts else 1)
        known_rows = condition.known.expand(B, L) if condition is not None else torch.zeros(B, L, dtype=torch.bool)
        shown = self.records.shown if self.records else (lambda x: x)  # a record reads up to its first EOS
        prev = None
        steps_taken = 0
        total_steps = job.steps * (1 if self.block_size is None else -(-L // self.block_size))  # steps per block
        t0 = time.perf_counter()

        def changes(cur: torch.Tensor) -> list[list[int]]:
            where = (cur != prev).nonzero()  # (n, 2): row, position
            return [[r, p, i] for (r, p), i in zip(where.tolist(), cur[cur != prev].tolist(), strict=True)]

        def on_step(step: int, state: torch.Tensor, nfe: int) -> None:
            nonlocal prev, steps_taken
            check()  # raises Stopped when the client left or the request timed out: sampling stops
            cur = shown(state.detach().to("cpu", copy=True))
            if step == 0:
                emit("start", {"length": L, "num_samples": B, "seed": job.seed, "sampler": job.sampler,
                               "steps": job.steps, "total_steps": total_steps, "block_size": self.block_size,
                               "state": cur.tolist(), "known": known_rows[0].tolist(),
                               "known_rows": known_rows.tolist(), "masked": self._masked(cur),
                               "record_lengths": job.record_lengths})
            else:
                emit("step", {"step": step, "nfe": nfe, "elapsed": time.perf_counter() - t0,
                              "changes": changes(cur), "masked": self._masked(cur)})
            prev, steps_taken = cur, step

        extra = {**job.options, **job.extras, **self._randomness(job.seed, B)}
        extra.update({"label": job.label} if job.label is not None else {})
        out = self.diffusion.sample(model, B, L, job.sampler, steps=job.steps, condition=condition,
                                    device=self.device, callback=on_step, **extra)
        final = out.samples.detach().to("cpu", copy=True)
        rows, records = self.records.result(final) if self.records else (final.tolist(), None)
        emit("done", {"steps_taken": steps_taken, "nfe": out.nfe,
                      "nfe_per_row": out.nfe_per_row.tolist(), "elapsed": time.perf_counter() - t0,
                      "changes": changes(shown(final)), "text": [self.decode(r) for r in rows],
                      "records": records, "seed": job.seed})

    def decode(self, row: list[int]) -> str | None:
        """The final text of a row (None for images and id-only checkpoints: the page draws those)."""
        if self.modality in ("image", "ids"):
            return None
        return self.tokenizer.decode(row)
