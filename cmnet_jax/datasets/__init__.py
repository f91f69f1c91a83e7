"""Micro-expression databases: real-format readers, LOSO folds, frame sampling.

Public names are imported lazily (on first attribute access) so that `import cmnet_jax.datasets`
stays cheap and never pulls in optional modules (the synthetic generator, the TFDS builders).

>>> import cmnet_jax.datasets as ds
>>> callable(ds.load_index) and callable(ds.loso_folds)
True
"""
from cmnet_jax import lazy

_LAZY = {
    "ClipRecord": "index",
    "DatasetError": "index",
    "DatasetIndex": "index",
    "Fold": "index",
    "Skipped": "index",
    "load_index": "registry",
    "loso_folds": "index",
    "load_clip": "frames",
    "sample_frame_indices": "frames",
}

__getattr__, __dir__, __all__ = lazy.exports(__name__, _LAZY)
