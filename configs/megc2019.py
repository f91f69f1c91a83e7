"""CMNet on the MEGC2019 composite (CASME II + SAMM + SMIC-HS), 3 classes, 68 subjects, LOSO, paper-scale settings.

    python run.py --config=configs/megc2019.py --config.data.root=/path/to/MEGC2019
    python run.py --config=configs/megc2019.py:quick --config.data.root=/path/to/MEGC2019   # smoke run

The database is licence-restricted: request it from its owners (see README) and point
`data.root` at the folder you unpacked. Writes results.json, per_subject.csv, predictions.txt
and figures to the workdir (default runs/megc2019).
"""
from . import common


def get_config(arg: str = ""):
  return common.real_config("megc2019", "3class", arg)
