"""cmnet_jax command line: the only place that reads flags.

    python run.py                                    # LOSO on the built-in synthetic set
    python run.py --config=configs/casme2.py --config.data.root=/data/CASME2
    python run.py --config=configs/synthetic.py:quick --workdir=runs/quick
    python run.py --mode=eval --workdir=runs/synthetic         # re-evaluate from checkpoints
    python run.py --mode=predict --workdir=runs/synthetic --frames=/path/to/clip_folder
    python run.py --mode=spot --workdir=runs/synthetic --frames=/path/to/clip_folder
    python run.py --mode=align --config=configs/samm.py --config.data.root=/data/SAMM  # face crops
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from cmnet_jax import host_devices

# On a CPU, one fold per forced host device (before JAX starts; see cmnet_jax.host_devices). Set
# XLA_FLAGS yourself to choose another count.
host_devices.expose_cpu_devices(8)

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cmnet_jax import config_args

_DEFAULT_CONFIG = str(Path(__file__).parent / "configs" / "synthetic.py")
_ARGV = list(sys.argv)
# Config files are Python, run as code. Eval, predict and spot use the workdir's config.json, so
# for them the --config file is never executed: its arguments are set aside before parsing.
_IGNORED_CONFIG_ARGS = (config_args.strip(sys.argv) if config_args.config_path(
    sys.argv, "train", flag="mode") in ("eval", "predict", "spot") else None)
if _IGNORED_CONFIG_ARGS is None:
  # A missing config file, an unknown variant or --config.<unknown key>: one short error line
  # and exit status 2 here, before ml_collections turns it into a traceback.
  config_args.exit_on_problems(sys.argv, _DEFAULT_CONFIG)
  _CONFIG = config_flags.DEFINE_config_file(
      "config", _DEFAULT_CONFIG,
      "Config file (optionally file.py:variant, e.g. configs/casme2.py:quick); Python, run as "
      "code: pass only files you trust.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run folder (checkpoints, reports). Default: runs/<config name>[_<variant>].")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "predict", "spot", "align"],
                          "train (resumes if the workdir has checkpoints, re-prints a finished run)"
                          " | eval | predict | spot (the last three with the workdir's own config; "
                          "spot prints a clip's per-frame intensity and its onset/apex/offset) | "
                          "align (aligned face crops of data.root, see README)")
_FRAMES = flags.DEFINE_string("frames", None, "predict, spot: folder holding one clip's frames.")
_ONSET = flags.DEFINE_integer("onset", None, "predict: onset frame number (default: first frame).")
_APEX = flags.DEFINE_integer("apex", None, "predict: apex frame number (default: spotted from the "
                             "learned intensity, as --mode=spot prints).")
_OFFSET = flags.DEFINE_integer("offset", None, "predict: offset frame number (default: last).")
_FOLD = flags.DEFINE_string("fold", None, "predict: use only this held-out subject's model "
                            "(default: the ensemble of every fold's model).")
_OUT = flags.DEFINE_string("out", None, "predict: the PNG to draw the clip's intensity curve in "
                           "(default: ./predict_<clip folder>_intensity.png).")


def default_workdir() -> Path:
  config_arg = (config_args.config_path(_ARGV, _DEFAULT_CONFIG)  # e.g. 'configs/x.py:quick'
                if _IGNORED_CONFIG_ARGS is not None else
                config_flags.get_config_filename(flags.FLAGS["config"]))
  name, _, variant = Path(config_arg).name.partition(":")
  name = Path(name).stem + (f"_{variant}" if variant else "")
  return Path("runs") / name


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; --verbosity=0 shows them
  sys.path.insert(0, str(Path(__file__).parent))
  from cmnet_jax import cli  # pylint: disable=g-import-not-at-top
  # '~' expanded as a shell would have (it does not after '--workdir=': a folder named '~').
  workdir = Path(_WORKDIR.value).expanduser() if _WORKDIR.value else default_workdir()
  config_given = (bool(_IGNORED_CONFIG_ARGS) or config_args.config_path(sys.argv, "") != ""
                  or bool(config_args.override_keys(sys.argv)))
  config = None if _IGNORED_CONFIG_ARGS is not None else _CONFIG.value  # None: config.json
  if _MODE.value in ("train", "eval"):  # Ctrl-C stops at once, compiling included
    from cmnet_jax import interrupt  # pylint: disable=g-import-not-at-top
    interrupt.stop_promptly(lambda: interrupt.resume_message(workdir, sys.argv, _MODE.value))
  return cli.run(_MODE.value, config, workdir, frames=_FRAMES.value, onset=_ONSET.value,
                 apex=_APEX.value, offset=_OFFSET.value, fold=_FOLD.value, out=_OUT.value,
                 config_given=config_given)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(lambda argv: sys.exit(main(argv)))
