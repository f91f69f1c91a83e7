"""CMNet on SMIC-HS, 3 classes (negative, positive, surprise), LOSO, paper-scale settings.

    python run.py --config=configs/smic.py --config.data.root=/path/to/SMIC
    python run.py --config=configs/smic.py:quick --config.data.root=/path/to/SMIC   # smoke run

The database is licence-restricted: request it from its owners (see README) and point
`data.root` at the folder you unpacked. Writes results.json, per_subject.csv, predictions.txt
and figures to the workdir (default runs/smic).
"""
from . import common


def get_config(arg: str = ""):
  return common.real_config("smic", "3class", arg)
