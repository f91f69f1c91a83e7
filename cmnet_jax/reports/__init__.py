"""The run's outputs in the workdir, from host NumPy arrays / lists / dicts.

- `files`: `results.json`, `per_subject.csv`, `predictions.txt` (MEGC log), atomic writes;
- `intensity`: Spearman agreement of learned intensities with the prototype / true intensity;
- `plots`: `confusion_matrix.png`, `intensity_curves.png`, `training_curves.png`;
- `tensorboard`: `ScalarWriter` (TensorBoard event files);
- `terminal`: the results table and the `Progress` printer.

Public names load lazily, so importing the package does not import matplotlib or tensorboardX.

>>> from cmnet_jax import reports
>>> callable(reports.write_results_json) and callable(reports.Progress)
True
"""
import importlib
from typing import Any

_LAZY = {
    "FINAL_EPOCH_LABEL": "files",
    "ORACLE_LABEL": "files",
    "atomic_write": "files",
    "read_predictions_txt": "files",
    "to_jsonable": "files",
    "write_per_subject_csv": "files",
    "write_predictions_txt": "files",
    "write_results_json": "files",
    "intensity_spearman": "intensity",
    "spearman": "intensity",
    "plot_confusion_matrix": "plots",
    "plot_intensity_curves": "plots",
    "plot_training_curves": "plots",
    "ScalarWriter": "tensorboard",
    "Progress": "terminal",
    "format_results_table": "terminal",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(list(globals()) + __all__)
