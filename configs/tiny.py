"""The smallest end-to-end configuration, used by the tests (seconds on a CPU).

    python run.py --config=configs/tiny.py --workdir=/tmp/cmnet_tiny
"""
from . import common


def get_config(arg: str = ""):
  c = common.base_config("synthetic", "small")
  c.synthetic.num_subjects = 3
  c.synthetic.clips_per_class = 1
  c.synthetic.image_size = 16
  c.synthetic.min_frames = 10
  c.synthetic.max_frames = 12
  c.synthetic.amplitude_px = 2.0
  c.data.image_size = 16
  c.data.num_frames = 5
  c.data.train_jitter_copies = 2
  c.model.widths = (8, 8)
  c.model.feature_dim = 8
  c.model.embedding_dim = 8
  c.model.lstm_hidden = 8
  c.model.norm_groups = 4
  c.augment.crop_padding = 1
  c.augment.blur_kernel = 3
  c.train.num_epochs = 2
  c.train.steps_per_epoch = 2
  c.train.batch_size = 4
  c.train.checkpoint_every_epochs = 1
  c.optim.warmup_steps = 1
  if arg == "quick":
    c.train.num_epochs = 1
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/tiny.py (known: 'quick')")
  c.lock()
  return c
