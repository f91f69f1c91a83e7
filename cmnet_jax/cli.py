"""What `run.py` does in each mode, with errors a user can act on (no tracebacks for bad data).

`--mode=eval`, `--mode=predict` and `--mode=spot` use the config recorded in the workdir (the one
it was trained with), whatever `--config` says; a `--config` given with them that differs is
named and ignored.
"""
from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Optional

import ml_collections

from cmnet_jax import config_blocks
from cmnet_jax import errors
from cmnet_jax.datasets import DatasetError
from cmnet_jax.datasets import sources


def _data_help(config: ml_collections.ConfigDict) -> str:
  name = config.data.name
  if name not in sources.SOURCES or sources.SOURCES[name].generated:
    return ""
  return (f"\n{sources.describe(name)}\nThe config key data.root points at it (now "
          f"{config.data.root!r}): pass --config.data.root=/path/to/it; data.annotation (now "
          f"{config.data.annotation!r}) can name the annotation file if it is elsewhere.")


def _recorded_config(workdir: Path, given: Optional[ml_collections.ConfigDict],
                     config_given: bool) -> ml_collections.ConfigDict:
  """The workdir's config.json (eval, predict); notes a differing `--config` (ignored).

  `given` is None from `run.py`, which does not execute a `--config` file in these modes.
  """
  from cmnet_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  wd = workdir_lib.Workdir(workdir)
  recorded = wd.load_config()
  if config_given and given is None:
    print(f"note: using {wd.config_file} (the config this workdir was trained with); the "
          "--config arguments given are ignored, and the config file is not executed")
  elif config_given:
    diff = workdir_lib.config_diff(recorded.to_dict(), given.to_dict())
    if diff:
      print(f"note: using {wd.config_file} (the config this workdir was trained with); the "
            f"--config given differs in {len(diff)} key(s), ignored: "
            + "; ".join(diff[:8]) + (" ..." if len(diff) > 8 else ""))
  return recorded


def _predict(workdir: Path, config, frames: str, *, onset, apex, offset, fold,
             out: Optional[str]) -> int:
  from cmnet_jax import predict  # pylint: disable=g-import-not-at-top
  result = predict.predict(workdir, frames, config=config, onset=onset, apex=apex, offset=offset,
                           fold=fold)
  for note in result["notes"]:
    print(note)
  if result["spotted"]:
    print(f"no --apex given: spotted from the learned intensity. {result['spotted']['reason']} "
          f"(--mode=spot prints every frame's intensity; --apex=N overrides)")
  width = max(len(c) for c in result["probabilities"])
  models = (f"ensemble of {len(result['folds'])} folds" if len(result["folds"]) > 1
            else f"fold {result['folds'][0]}")
  print(f"clip {frames}: frames {result['frames']} (apex at position "
        f"{result['apex_position']}), models: {models}")
  for name, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
    print(f"  {name:<{width}}  {p:.3f}")
  print(f"predicted: {result['predicted']}")
  path = Path(out) if out else Path.cwd() / f"predict_{Path(frames).name}_intensity.png"
  replaced = path.exists()
  try:
    predict.write_curve(result, path)
  except OSError as e:
    print(f"error: cannot write the intensity curve to {path} ({e.strerror}); pass "
          "--out=/a/writable/file.png", file=sys.stderr)
    return 1
  print(f"intensity curve: {path}" + (" (replaced the earlier one)" if replaced else ""))
  return 0


def _spot(workdir: Path, config, frames: str, *, onset, offset, fold) -> int:
  from cmnet_jax import predict  # pylint: disable=g-import-not-at-top
  result = predict.spot(workdir, frames, config=config, onset=onset, offset=offset, fold=fold)
  for note in result["notes"]:
    print(note)
  marks = {result["onset"]: "onset", result["apex"]: "apex", result["offset"]: "offset"}
  diff = result["difference_apex"]
  print(f"clip {frames}: learned intensity per frame (mean of the fold models) and mean absolute "
        "difference from the first frame")
  print(f"{'frame':>7}  {'intensity':>9}  {'difference':>10}")
  for n, s, m in zip(result["frames"], result["intensity"], result["motion"]):
    tags = [marks[n]] if n in marks else []
    tags += ["largest difference"] if n == diff else []
    print(f"{n:>7}  {s:>9.3f}  {m:>10.4f}" + (f"  <- {', '.join(tags)}" if tags else ""))
  print(f"spotted: onset {result['onset']}, apex {result['apex']}, offset {result['offset']}")
  print(result["reason"])
  return 0


def run(mode: str, config: ml_collections.ConfigDict, workdir: Path, *,
        frames: Optional[str] = None, onset=None, apex=None, offset=None,
        fold: Optional[str] = None, out: Optional[str] = None,
        config_given: bool = False) -> int:
  """Runs one mode; returns the process exit code.

  `config_given`: whether the user passed `--config` or `--config.<key>` (eval and predict
  then say which of its keys differ from the workdir's config).
  """
  if mode in ("predict", "spot") and not frames:
    print(f"error: --mode={mode} needs --frames=/path/to/clip_folder", file=sys.stderr)
    return 2
  # Imported here so that `--help` and flag errors stay fast.
  from cmnet_jax import checkpoint  # pylint: disable=g-import-not-at-top
  try:
    if mode in ("eval", "predict", "spot"):
      config = _recorded_config(workdir, config, config_given)
    try:  # every bad config value at once, before anything is written
      from cmnet_jax import config_schema  # pylint: disable=g-import-not-at-top
      config_schema.validate(config)
    except config_blocks.ConfigError as e:
      for problem in e.problems:
        print(f"error: {problem}", file=sys.stderr)
      if mode in ("eval", "predict", "spot"):  # the values came from config.json, not flags
        print(f"(these values are in {Path(workdir) / 'config.json'}, the config this workdir "
              "was trained with: was it edited? Put back what training recorded)",
              file=sys.stderr)
      return 1
    if mode in ("train", "eval"):
      from cmnet_jax import train  # pylint: disable=g-import-not-at-top
      train.train_and_evaluate(config, workdir, evaluate_only=mode == "eval")
    elif mode == "align":
      from cmnet_jax.align import runner  # pylint: disable=g-import-not-at-top
      return runner.main(config)
    elif mode == "predict":
      return _predict(workdir, config, frames, onset=onset, apex=apex, offset=offset, fold=fold,
                      out=out)
    elif mode == "spot":
      return _spot(workdir, config, frames, onset=onset, offset=offset, fold=fold)
    else:
      raise ValueError(f"unknown mode {mode!r}")
  except DatasetError as e:
    print(f"error: {e}{_data_help(config)}", file=sys.stderr)
    return 1
  except (checkpoint.CheckpointError, checkpoint.CheckpointMismatchError, errors.RunError,
          errors.NonFiniteLossError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except OSError as e:  # a full disk or an unwritable folder while writing a run's file
    cause = checkpoint.write_failure(e)
    in_the_way = {errno.EEXIST: "a file where the run makes a folder",
                  errno.ENOTDIR: "a file where the run expects a folder",
                  errno.EISDIR: "a folder where the run writes a file"}.get(e.errno)
    if in_the_way and e.filename:
      where = Path(e.filename)
      if e.errno == errno.ENOTDIR:  # name the file standing where a folder of the path should be
        where = next((q for q in [where, *where.parents] if q.exists() and not q.is_dir()), where)
      print(f"error: {where} is {in_the_way} ({e.strerror}); the run did not make it. Move "
            "it away and run the same command again (what was saved before is intact)",
            file=sys.stderr)
      return 1
    if not cause:
      raise
    print(f"error: cannot write {e.filename or 'a file'}: {cause}. What was saved before is "
          f"intact (each file is written whole or not at all) and resuming is safe: free some "
          f"space (or make {workdir} writable) and run the same command again", file=sys.stderr)
    return 1
  return 0
