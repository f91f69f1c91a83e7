"""CMNet on CASME II, 5 classes (happiness, disgust, repression, surprise, others), LOSO, paper-scale settings.

    python run.py --config=configs/casme2.py --config.data.root=/path/to/CASME2
    python run.py --config=configs/casme2.py:quick --config.data.root=/path/to/CASME2   # smoke run

The database is licence-restricted: request it from its owners (see README) and point
`data.root` at the folder you unpacked. Writes results.json, per_subject.csv, predictions.txt
and figures to the workdir (default runs/casme2).
"""
from . import common


def get_config(arg: str = ""):
  return common.real_config("casme2", "5class", arg)
