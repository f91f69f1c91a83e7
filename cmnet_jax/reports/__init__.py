"""The run's outputs in the workdir, from host NumPy arrays / lists / dicts.

- `files`: `results.json`, `per_subject.csv`, `predictions.txt` (MEGC log), atomic writes;
- `intensity`: Spearman agreement of learned intensities with the prototype / true intensity;
- `plots`: `confusion_matrix.png`, `intensity_curves.png`, `training_curves.png`;
- `tensorboard`: `ScalarWriter` (tensorboardX's event files, one per session), `read_events`;
- `terminal`: the results table and the `Progress` printer (tqdm).

Public names load lazily, so importing the package does not import matplotlib or tensorboardX.

>>> from cmnet_jax import reports
>>> callable(reports.write_results_json) and callable(reports.Progress)
True
"""
from cmnet_jax import lazy

_LAZY = {
    "FINAL_EPOCH_LABEL": "files",
    "ORACLE_LABEL": "files",
    "atomic_write": "files",
    "to_jsonable": "files",
    "write_per_subject_csv": "files",
    "write_predictions_txt": "files",
    "write_results_json": "files",
    "format_diagnostics": "intensity",
    "intensity_diagnostics": "intensity",
    "intensity_spearman": "intensity",
    "format_position_diagnostics": "intensity",
    "motion_energy": "intensity",
    "partial_r_given_position": "intensity",
    "position_diagnostics": "intensity",
    "variance_explained_by_position": "intensity",
    "spearman": "intensity",
    "plot_confusion_matrix": "plots",
    "plot_intensity_curves": "plots",
    "plot_training_curves": "plots",
    "ScalarWriter": "tensorboard",
    "epoch_scalars": "tensorboard",
    "read_events": "tensorboard",
    "Progress": "terminal",
    "format_results_table": "terminal",
}

__getattr__, __dir__, __all__ = lazy.exports(__name__, _LAZY)
