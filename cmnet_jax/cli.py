"""The command line (`python run.py`, or `cmnet-jax` once installed) and what each mode does,
with errors a user can act on (no tracebacks for bad data).

    cmnet-jax                                        # LOSO on the built-in synthetic set
    cmnet-jax --config=casme2 --config.data.root=/data/CASME2    # a shipped config, by name
    cmnet-jax --config=synthetic:quick --workdir=runs/quick
    python run.py --config=configs/casme2.py:quick   # the same configs by path, in the checkout
    cmnet-jax --plugins=mypkg.mylosses --config=tiny --config.loss.lambda_peak=0.1
    cmnet-jax --mode=eval --workdir=runs/synthetic         # re-evaluate from checkpoints
    cmnet-jax --mode=predict --workdir=runs/synthetic --frames=/path/to/clip_folder
    cmnet-jax --mode=spot --workdir=runs/synthetic --frames=/path/to/clip_folder
    cmnet-jax --mode=align --config=samm --config.data.root=/data/SAMM  # face crops

`--mode=eval`, `--mode=predict` and `--mode=spot` use the config recorded in the workdir (the one
it was trained with), whatever `--config` says; a `--config` given with them that differs is
named and ignored. `--plugins` modules are imported before the config is read (`plugins`), and
recorded in the workdir's config.json, from where eval, predict, spot and a resume import them.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import ml_collections

from cmnet_jax import config_args
from cmnet_jax import config_blocks
from cmnet_jax import errors
from cmnet_jax import host_devices
from cmnet_jax import plugins as plugins_lib
from cmnet_jax.datasets import DatasetError
from cmnet_jax.datasets import sources

DEFAULT_CONFIG = "synthetic"
MODES = ["train", "eval", "predict", "spot", "align"]
_RECORDED_MODES = ("eval", "predict", "spot")  # these use the workdir's config.json


def default_workdir(argv: Sequence[str]) -> Path:
  """runs/<config name>[_<variant>] for the `--config` of `argv` (a name or a path).

  >>> default_workdir(['run.py', '--config=configs/casme2.py:quick']), default_workdir(['x'])
  (PosixPath('runs/casme2_quick'), PosixPath('runs/synthetic'))
  """
  name, _, variant = Path(config_args.config_path(argv, DEFAULT_CONFIG)).name.partition(":")
  return Path("runs") / (Path(name).stem + (f"_{variant}" if variant else ""))


def _workdir(argv: Sequence[str]) -> Path:
  # '~' expanded as a shell would have (it does not after '--workdir=': a folder named '~').
  given = config_args.config_path(argv, "", flag="workdir")
  if given and "://" in given:  # gs://bucket/run: etils.epath (cmnet_jax.storage); Path('gs://x')
    from cmnet_jax import storage  # pylint: disable=import-outside-toplevel  # would be 'gs:/x'
    return storage.as_path(given)
  return Path(given).expanduser() if given else default_workdir(argv)


def _recorded_plugins(workdir: Path) -> list[str]:
  """The plug-ins a workdir's config.json names (a resume imports them before the config file
  runs); [] when there is none or it cannot be read (the run reports that itself)."""
  from cmnet_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  try:
    recorded = workdir_lib.Workdir(workdir).read_config()
  except (OSError, ValueError):  # WorkdirError included
    return []
  return plugins_lib.recorded(recorded or {})


def _fail(message: str, code: int) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _define_flags(argv: list[str]):
  """Defines the flags (absl) for `argv`; in train and align mode imports the plug-ins and
  loads the config first. Returns the config flag's holder (None where config.json is used).
  Changes `argv` in place: the arguments absl must not parse are taken out."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  mode = config_args.config_path(argv, "train", flag="mode")
  try:
    given = plugins_lib.parse(config_args.config_path(argv, "", flag="plugins"),
                              source="--plugins")
    plugins_lib.load(given, source="--plugins")
  except plugins_lib.PluginError as e:
    _fail(str(e), 2)
  holder = None
  if mode in _RECORDED_MODES:
    # Config files are Python, run as code: for these modes the --config file is never
    # executed; its arguments are set aside before parsing.
    ignored = config_args.strip(argv)
  else:
    ignored = None
    workdir = _workdir(argv)
    try:
      recorded = _recorded_plugins(workdir) if mode == "train" else []
      plugins_lib.load(recorded, source=f"{workdir / 'config.json'} (key plugins, the "
                       "plug-ins this workdir was trained with)")
    except plugins_lib.PluginError as e:
      _fail(str(e), 1)
    # A missing config file, an unknown variant or --config.<unknown key>: one short error line
    # and exit status 2 here, before ml_collections turns it into a traceback.
    config_arg = config_args.config_path(argv, DEFAULT_CONFIG)
    config, problem = config_args.load(config_arg)
    found = [problem] if problem else config_args.problems(argv, DEFAULT_CONFIG, config=config)
    for line in found:
      print(f"error: {line}", file=sys.stderr)
    if found:
      sys.exit(2)
    plugins_lib.record(config, list(dict.fromkeys(recorded + given)))
    config_args.strip(argv, keep_overrides=True)  # the file was read; absl sets the overrides
    holder = config_flags.DEFINE_config_dict(
        "config", config, "Config: a shipped config by name ("
        f"{', '.join(config_args.config_names())}"
        "; name:variant, e.g. synthetic:quick) or a config file (configs/casme2.py:quick); "
        "Python, run as code: pass only files you trust.", lock_config=True, sys_argv=argv)
    flags.FLAGS["config"].default_as_str = repr(DEFAULT_CONFIG)  # not the whole config in --help
  flags.DEFINE_string("workdir", None, "Run folder (checkpoints, reports). Default: "
                      "runs/<config name>[_<variant>].")
  flags.DEFINE_enum("mode", "train", MODES,
                    "train (resumes if the workdir has checkpoints, re-prints a finished run) | "
                    "eval | predict | spot (the last three with the workdir's own config; spot "
                    "prints a clip's per-frame intensity and its onset/apex/offset) | align "
                    "(aligned face crops of data.root, see README)")
  flags.DEFINE_list("plugins", [], "Python modules to import before the config is read (e.g. "
                    "mypkg.mylosses: its losses.register_term adds loss.* keys); recorded in the "
                    "workdir, from where eval, predict, spot and a resume import them again.")
  flags.DEFINE_string("frames", None, "predict, spot: folder holding one clip's frames.")
  flags.DEFINE_integer("onset", None, "predict: onset frame number (default: first frame).")
  flags.DEFINE_integer("apex", None, "predict: apex frame number (default: spotted from the "
                       "learned intensity, as --mode=spot prints).")
  flags.DEFINE_integer("offset", None, "predict: offset frame number (default: last).")
  flags.DEFINE_string("fold", None, "predict: use only this held-out subject's model (default: "
                      "the ensemble of every fold's model).")
  flags.DEFINE_string("out", None, "predict: the PNG to draw the clip's intensity curve in "
                      "(default: ./predict_<clip folder>_intensity.png).")
  for name in ("config", "workdir", "mode", "plugins", "frames", "onset", "apex", "offset",
               "fold", "out"):  # listed by --helpshort, which shows the main module's flags
    if name in flags.FLAGS:
      flags.FLAGS.register_flag_by_module(sys.argv[0], flags.FLAGS[name])
  return holder, ignored


def _main(argv: list[str], original: list[str], holder, ignored) -> int:
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f["verbosity"].present:
    # Orbax logs every save at INFO; --verbosity=0 shows them.
    logging.set_verbosity(logging.WARNING)
  workdir = _workdir(original)
  config_given = (bool(ignored) or config_args.config_path(original, "") != ""
                  or bool(config_args.override_keys(original)))
  config = None if holder is None else holder.value  # None: config.json
  mode = f.mode
  if mode in ("train", "eval"):  # Ctrl-C stops at once, compiling included
    from cmnet_jax import interrupt  # pylint: disable=g-import-not-at-top
    again = (["-m", "cmnet_jax", *original[1:]] if original[0].endswith("__main__.py")
             else original[:])  # the command that resumes, as typed
    interrupt.stop_promptly(lambda: interrupt.resume_message(workdir, again, mode))
  return run(mode, config, workdir, frames=f.frames, onset=f.onset, apex=f.apex,
             offset=f.offset, fold=f.fold, out=f.out, config_given=config_given)


def main(argv: Optional[Sequence[str]] = None) -> None:
  """The command: `cmnet-jax` (installed by `pip install .`) and `python run.py`; exits."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # On a CPU, one fold per forced host device (before JAX starts; see cmnet_jax.host_devices).
  # Set XLA_FLAGS yourself to choose another count.
  host_devices.expose_cpu_devices(8)
  from absl import app  # pylint: disable=import-outside-toplevel
  original = list(sys.argv if argv is None else argv)
  parsed = list(original)
  holder, ignored = _define_flags(parsed)
  app.run(lambda rest: sys.exit(_main(rest, original, holder, ignored)), argv=parsed)


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
  raw = wd.read_config()
  if raw is not None:  # the run's plug-ins first: their keys are part of the recorded config
    plugins_lib.load(plugins_lib.recorded(raw), source=f"{wd.config_file} (key plugins, the "
                     "plug-ins this workdir was trained with)")
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
