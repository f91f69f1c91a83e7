"""Default: CMNet on the built-in synthetic micro-expression set (8 subjects, LOSO).

    python run.py --config=configs/synthetic.py --workdir=runs/synthetic
    python run.py --config=configs/synthetic.py:quick --workdir=runs/synthetic_quick

Generates the data under the workdir, trains the 8 folds side by side, and prints the pooled
LOSO accuracy / UF1 / UAR (chance is 0.2). Finishes within 10 minutes on 2 CPU cores.
"""
from configs import common


def get_config(arg: str = ""):
  c = common.base_config("synthetic", "small")
  if arg == "quick":
    c.synthetic.num_subjects = 4
    c.synthetic.clips_per_class = 2
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 3
    c.train.batch_size = 8
    c.train.checkpoint_every_epochs = 1
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/synthetic.py (known: 'quick')")
  c.lock()
  return c
