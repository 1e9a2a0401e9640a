"""What `discdiff sample` (and the web demo) checks and builds for conditional models: the --label flag
(a class name from the corpus or an integer), prompts of a prompt-response (SFT) model, and when guidance
against the null branch is possible. Every refusal is one line naming the fix."""

from __future__ import annotations

__all__ = ["add_label_argument", "check_null_guidance", "conditioning_of", "label_id", "prompt_limit",
           "resolve_label", "response_of"]


def add_label_argument(p) -> None:
    p.add_argument("--label", default=None, metavar="NAME|ID",
                   help="class of a class-conditional model: a name from its corpus (e.g. sandal) or an integer id")


def conditioning_of(pre) -> dict:
    """The `conditioning` record of a pretrained config (empty for a model saved before it existed)."""
    record = dict(pre.config.get("conditioning") or {})
    record.setdefault("num_classes", pre.config.get("model", {}).get("num_classes"))
    return record


def resolve_label(text: str | int | None, pre, name: str = "--label") -> int | None:
    """The class id a --label (a name or an integer) means for this model; ValueError naming the choices."""
    if text is None:
        return None
    cond = conditioning_of(pre)
    return label_id(text, cond.get("num_classes"), cond.get("label_names") or [], name)


def label_id(text: str | int, num_classes: int | None, names: list[str], name: str = "--label") -> int:
    """A label given as a class name or an integer, checked against ``num_classes`` (and its ``names``)."""
    if num_classes is None:
        raise ValueError(f"{name} needs a class-conditional model (trained with model.num_classes); this one "
                         "takes no label")
    choices = ", ".join(f"{i}={n}" for i, n in enumerate(names)) if names else f"0..{num_classes - 1}"
    text = str(text).strip()
    if text.lstrip("-").isdigit():
        label = int(text)
        if not 0 <= label < num_classes:
            raise ValueError(f"{name} {label} is outside this model's {num_classes} classes ({choices})")
        return label
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    hint = "" if names else " (its training data recorded no class names: give an id, or prepare the corpus " \
        "again with --force and retrain to use names)"
    raise ValueError(f"{name} {text!r} is not a class of this model; choose one of: {choices}{hint}")


def check_null_guidance(conditioning: dict, guidance: float, mode: str, label: int | None, has_prompt: bool,
                        flag: str = "--guidance") -> None:
    """Guidance against the null branch needs a condition and a model that learned the unconditional
    branch (trained with condition_dropout > 0; ``conditioning``: ``conditioning_of(pre)``); say which fix
    applies. ``flag`` names the option in the message (the web demo: "guidance")."""
    if not guidance:
        return
    if label is None and not has_prompt:
        raise ValueError(f"{flag} needs a prompt: use --prompt or --template (or --label on a class-conditional "
                         "model)")
    if mode != "null":
        return
    if label is None and not conditioning.get("prompt_response"):
        return  # an unconditional model's prompt: the null branch masks it, which every masked model was trained on
    if not conditioning.get("condition_dropout"):
        raise ValueError(f"{flag} (mode null) needs a model trained with condition dropout (set "
                         "condition_dropout > 0 when training); this one never learned the unconditional branch. "
                         "Use --guidance-mode infill to contrast with the known positions masked instead")


def prompt_limit(pre, prompt_ids: int, length: int) -> None:
    """A prompt must leave at least one position to generate within the length (and the context)."""
    context = pre.config["context"]
    if prompt_ids >= min(length, context):
        raise ValueError(f"--prompt is {prompt_ids} tokens, but the sequence holds {min(length, context)} "
                         f"(the model's context is {context}); shorten the prompt so a response fits")


def response_of(ids: list[int], prompt_length: int, tokenizer) -> str | None:
    """A prompt-response model's answer: the tokens after the prompt, up to the first EOS."""
    if tokenizer is None:
        return None
    response = ids[prompt_length:]
    eos = getattr(tokenizer, "eos_id", None)
    if eos is not None and eos in response:
        response = response[:response.index(eos)]
    return tokenizer.decode(response)
