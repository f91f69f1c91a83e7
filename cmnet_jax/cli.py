"""What `run.py` does in each mode, with errors a user can act on (no tracebacks for bad data)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import ml_collections

from cmnet_jax import config_blocks
from cmnet_jax.datasets import DatasetError
from cmnet_jax.datasets import sources


def _data_help(config: ml_collections.ConfigDict) -> str:
  name = config.data.name
  if name not in sources.SOURCES:
    return ""
  return (f"\n{sources.describe(name)}\nThe config key data.root points at it (now "
          f"{config.data.root!r}): pass --config.data.root=/path/to/it; data.annotation (now "
          f"{config.data.annotation!r}) can name the annotation file if it is elsewhere.")


def run(mode: str, config: ml_collections.ConfigDict, workdir: Path, *,
        frames: Optional[str] = None, onset=None, apex=None, offset=None,
        fold: Optional[str] = None) -> int:
  """Runs one mode; returns the process exit code."""
  try:  # every bad config value at once, before anything is written
    config_blocks.validate(config)
  except config_blocks.ConfigError as e:
    for problem in e.problems:
      print(f"error: {problem}", file=sys.stderr)
    return 1
  # Imported here so that `--help` and flag errors stay fast.
  from cmnet_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from cmnet_jax import train  # pylint: disable=g-import-not-at-top
  try:
    if mode == "train":
      train.train_and_evaluate(config, workdir)
    elif mode == "eval":
      train.train_and_evaluate(config, workdir, evaluate_only=True)
    elif mode == "prepare":
      from cmnet_jax.datasets import tfds as tfds_lib  # pylint: disable=g-import-not-at-top
      path = tfds_lib.prepare(config, workdir)
      print(f"prepared TFDS data in {path}")
    elif mode == "align":
      from cmnet_jax.align import runner  # pylint: disable=g-import-not-at-top
      return runner.main(config)
    elif mode == "predict":
      if not frames:
        print("error: --mode=predict needs --frames=/path/to/clip_folder", file=sys.stderr)
        return 2
      from cmnet_jax import predict  # pylint: disable=g-import-not-at-top
      out = predict.predict(workdir, frames, onset=onset, apex=apex, offset=offset, fold=fold)
      width = max(len(c) for c in out["probabilities"])
      print(f"clip {frames}: frames {out['frames']} (apex at position {out['apex_position']}), "
            f"models: {'ensemble of ' + str(len(out['folds'])) + ' folds' if len(out['folds']) > 1 else 'fold ' + out['folds'][0]}")
      for name, p in sorted(out["probabilities"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<{width}}  {p:.3f}")
      print(f"predicted: {out['predicted']}; intensity curve: {out['intensity_png']}")
    else:
      raise ValueError(f"unknown mode {mode!r}")
  except DatasetError as e:
    print(f"error: {e}{_data_help(config)}", file=sys.stderr)
    return 1
  except (checkpoint.CheckpointError, train.RunError, train.NonFiniteLossError,
          FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0
