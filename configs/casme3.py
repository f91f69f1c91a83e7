"""CMNet on CAS(ME)^3 Part A, 7 classes, LOSO, paper-scale settings.

    python run.py --config=configs/casme3.py --config.data.root=/path/to/CASME3
    python run.py --config=configs/casme3.py:quick --config.data.root=/path/to/CASME3   # smoke run

The database is licence-restricted: request it from its owners (see README) and point
`data.root` at the folder you unpacked. Writes results.json, per_subject.csv, predictions.txt
and figures to the workdir (default runs/casme3).
"""
from . import common


def get_config(arg: str = ""):
  return common.real_config("casme3", "7class", arg)
