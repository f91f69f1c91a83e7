"""Micro-expression databases: real-format readers, LOSO folds, frame sampling, fake trees.

Public names are imported lazily (on first attribute access) so that `import cmnet_jax.datasets`
stays cheap and never pulls in optional modules (the synthetic generator, the TFDS builders).

>>> import cmnet_jax.datasets as ds
>>> callable(ds.load_index) and callable(ds.loso_folds)
True
"""
import importlib
from typing import Any

_LAZY = {
    "ClipRecord": "index",
    "DatasetError": "index",
    "DatasetIndex": "index",
    "Fold": "index",
    "Skipped": "index",
    "load_index": "index",
    "loso_folds": "index",
    "load_clip": "frames",
    "sample_frame_indices": "frames",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(list(globals()) + __all__)
