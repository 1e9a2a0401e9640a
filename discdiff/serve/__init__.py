"""The web demo: watch a model denoise, infill and complete, step by step, in the browser.

    discdiff serve --checkpoint runs/sc/pretrained        # http://127.0.0.1:8000

or from Python:

    from discdiff.serve import Engine, Limits, create_app
    app = create_app(Engine.load("runs/sc/pretrained", Limits(max_steps=256)))   # any ASGI server runs it

``engine`` (no web code): the checkpoint, limits, request validation and a generation that emits every
sampler step. ``template``: the blank syntax (``_`` one blank, ``{N}`` N blanks). ``app``: Starlette routes
streaming those steps as server-sent events to ``static/`` (a plain HTML/JS page, no build step).
``create_app`` needs the ``serve`` extra (starlette, uvicorn) and is imported on first use.
"""

from discdiff.data.template import TemplateError, parse_template, template_ids

from .engine import Engine, Job, Limits, RequestError, Stopped

__all__ = ["Engine", "Job", "Limits", "RequestError", "Stopped", "TemplateError", "create_app", "parse_template",
           "template_ids"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
