"""Register discdiff's model classes with transformers' Auto factories, without importing transformers.

``import discdiff`` must stay torch + numpy (importing transformers costs seconds on every command), yet
after ``import discdiff``, ``transformers.AutoConfig`` / ``AutoModel.from_pretrained(dir)`` must know
``model_type: "discdiff"``. So the registration runs when transformers' Auto layer is first imported:

* ``transformers.models.auto.configuration_auto`` loaded -> ``AutoConfig.register("discdiff", DiscdiffConfig)``
* ``transformers.models.auto.modeling_auto`` loaded -> ``AutoModel`` / ``AutoModelForMaskedLM`` register
  ``DiscdiffModel``

If a module is already imported when discdiff is, its registration runs at once; otherwise a
``sys.meta_path`` finder wraps that module's loader so the registration runs right after the module's code
(and so before any ``AutoModel`` call can see the mapping). Hooking the Auto modules rather than the
``transformers`` package keeps ``import transformers`` / ``AutoTokenizer`` free of the ~2 s that importing
``PreTrainedModel`` costs: that cost is paid only by code that builds models anyway.

The registrations are named by string (``discdiff.hf.hf_config:register_config``), as a plug-in entry point
is: this module imports nothing from discdiff, so the core never imports the hf room (it is a floor above).
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import warnings

__all__ = ["REGISTRATIONS", "install"]

# module whose import triggers the registration -> "module:function" that registers
REGISTRATIONS = {
    "transformers.models.auto.configuration_auto": "discdiff.hf.hf_config:register_config",
    "transformers.models.auto.modeling_auto": "discdiff.hf.hf_model:register_models",
}


def _run(target: str) -> None:
    module, _, function = target.partition(":")
    try:
        getattr(importlib.import_module(module), function)()
    except Exception as e:  # an incompatible transformers must not break `import transformers` itself
        warnings.warn(f"discdiff could not register its model classes with transformers ({target}: {e})",
                      stacklevel=3)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it lets the other finders find it and wraps the loader."""

    def __init__(self, pending: dict[str, str]):
        self.pending = dict(pending)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        registration = self.pending.pop(fullname)
        if not self.pending:
            sys.meta_path.remove(self)
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _run(registration)

        spec.loader.exec_module = exec_then_register  # this spec's own loader object, not a shared one
        return spec


def install() -> None:
    """Register now for the Auto modules already imported, and on first import for the others (idempotent)."""
    if any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        return
    later = {}
    for module, registration in REGISTRATIONS.items():
        if module in sys.modules:
            _run(registration)
        else:
            later[module] = registration
    if later:
        sys.meta_path.insert(0, _RegisterAfterImport(later))
