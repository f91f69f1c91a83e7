"""CMNet on SAMM, 5 classes (anger, contempt, happiness, surprise, other), LOSO, paper-scale settings.

    python run.py --config=configs/samm.py --config.data.root=/path/to/SAMM
    python run.py --config=configs/samm.py:quick --config.data.root=/path/to/SAMM   # smoke run

The database is licence-restricted: request it from its owners (see README) and point
`data.root` at the folder you unpacked. Writes results.json, per_subject.csv, predictions.txt
and figures to the workdir (default runs/samm).
"""
from . import common


def get_config(arg: str = ""):
  return common.real_config("samm", "5class", arg)
