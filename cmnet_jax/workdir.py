"""The run folder (workdir): every file a run reads or writes is named, read and written here.

    <workdir>/
      .lock                    held by the run using the workdir (fcntl.flock; other processes
                               of a multi-host run: .lock-processPPP); freed when a run dies
      config.json              the run's config, written once its data loaded
      folds.json               class names, held-out subjects, the clips and data fingerprint
      data/clips-<c>-<d>.npz   decoded clips (cache: c = config, d = annotation + frame files)
      data/frame-hashes.json   sha256 of each frame file, on its size and mtime (a cache)
      data/<name>/             a generated database (the synthetic set) when data.root is ''
      checkpoints/groupGGG_processPPP/<epoch>/   Orbax checkpoints of one fold group
      folds/groupGGG_processPPP.npz              a finished fold group's held-out outputs
      results.json per_subject.csv predictions.txt confusion_matrix.png intensity_curves.png
      training_curves.png      the reports
      tensorboard/             TensorBoard event files, one per training session (one run)

On object storage (`--workdir=gs://bucket/run`, see `cmnet_jax.storage`) the same names hold,
except: the lock is a run marker object `.lock` (`storage.RunMarker`), and what is a cache or an
input (data/: decoded clips, frame hashes, a generated database) and the event files being
written stay in a host-local folder (`storage.local_dir`), the event files copied to
tensorboard/ after every epoch.

What a workdir accepts (`check_config`, `check_data`): the same config and data to resume or
re-print; any config when nothing is trained yet (no checkpoint, no finished fold group: the
new config replaces the old one); once something is trained only `RESUMABLE` keys may change
(where the data are, how often checkpoints are kept), never what is trained or on which data.
A key absent from config.json (added to the code after the run) counts as its default
(`config_defaults`), which keeps the earlier behaviour; absent with another value, it differs.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import io
import json
import os
import socket
import stat
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional

import numpy as np

from cmnet_jax import storage
from cmnet_jax.errors import WorkdirError

CONFIG, FOLDS, RESULTS = "config.json", "folds.json", "results.json"
REPORTS = {"results": RESULTS, "per_subject": "per_subject.csv",
           "predictions": "predictions.txt", "confusion": "confusion_matrix.png",
           "intensity": "intensity_curves.png", "training": "training_curves.png"}
# Keys that may differ from config.json once something is trained: they change neither what is
# trained nor on which data (a moved data.root is checked by the data fingerprint).
# The data fingerprint's format (`input_pipeline.fingerprints`), recorded in folds.json: 1 (before
# issue 23, no key) = frame paths and sizes; 2 = also the frame files' contents.
DATA_FINGERPRINT_FORMAT = 2
RESUMABLE = ("data.root", "data.annotation", "data.aligned_root", "train.checkpoint_every_epochs",
             "train.checkpoints_to_keep", "align.")


def _writable(path: Path) -> bool:
  """Whether this user may create files in the folder `path`."""
  return os.access(path, os.W_OK | os.X_OK)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """{'block.key': value} of a nested dict (JSON-normalised: tuples become lists).

  >>> flatten({'a': {'b': (1, 2)}, 'c': 3})
  {'a.b': [1, 2], 'c': 3}
  """
  if isinstance(tree, dict):
    out = {}
    for key in sorted(tree):
      out.update(flatten(tree[key], f"{prefix}{key}."))
    return out
  return {prefix[:-1]: json.loads(json.dumps(tree))}


def config_diff(old: dict, new: dict, defaults: Optional[dict] = None) -> list[str]:
  """`key: old -> new` for every differing key of two nested config dicts.

  `defaults` (flat, see `config_defaults`): a key absent from `old` (a config recorded before
  the key existed) counts as its default, the value that keeps the code's earlier behaviour.

  >>> config_diff({'t': {'lr': 0.1, 'n': 2}}, {'t': {'lr': 0.2, 'n': 2, 'x': 1}})
  ['t.lr: 0.1 -> 0.2', 't.x: (absent) -> 1']
  >>> config_diff({'t': {'n': 2}}, {'t': {'n': 2, 'x': 0, 'y': 1}}, {'t.x': 0, 't.y': 0})
  ['t.y: (absent; its default 0) -> 1']
  """
  a, b = flatten(old), flatten(new)
  defaults = defaults or {}
  text = lambda v: json.dumps(v, sort_keys=True)
  def show(d, k):
    if k in d:
      return text(d[k])
    if d is a and k in defaults:
      return f"(absent; its default {text(defaults[k])})"
    if d is b and defaults and k not in defaults:  # removed, or a term registered elsewhere
      return "(absent: this code has no such key)"
    return "(absent)"
  def same(k):  # compared as text: NaN equals NaN
    if k not in a and k in defaults and k in b:
      return text(defaults[k]) == text(b[k])
    return show(a, k) == show(b, k)
  return [f"{k}: {show(a, k)} -> {show(b, k)}" for k in sorted(set(a) | set(b)) if not same(k)]


def config_defaults(recorded: dict) -> dict[str, Any]:
  """{'block.key': default} of every key the code now reads, for the database and scale of a
  recorded config: `configs/common.py`'s `base_config` (the file where every key is declared
  with its default, loss terms included; installed as `cmnet_jax.configs.common`), {} when
  there is none.

  A key added to the code takes a default that keeps the earlier behaviour (e.g. a new loss
  term's coefficient 0), so a config recorded before it existed is that default, not a
  difference (issue 23): older workdirs stay resumable, re-printable and evaluable.
  """
  import importlib  # pylint: disable=g-import-not-at-top
  from cmnet_jax import config_args  # pylint: disable=g-import-not-at-top
  try:  # the checkout's configs/, or the installed cmnet_jax/configs (pip install .)
    config_args.configs_package()
  except FileNotFoundError:
    return {}
  module = importlib.import_module(f"{config_args.CONFIGS_PACKAGE}.common")
  data, model = recorded.get("data") or {}, recorded.get("model") or {}
  scale = "paper" if model.get("encoder") == "resnet18" else "small"
  return flatten(module.base_config(str(data.get("name", "synthetic")), scale).to_dict())


def with_defaults(recorded: dict, defaults: dict[str, Any]) -> tuple[dict, list[str]]:
  """(`recorded` with its absent keys set to their defaults, the keys added).

  >>> with_defaults({'t': {'n': 2}}, {'t.n': 5, 't.x': 0, 'u.y': [1]})
  ({'t': {'n': 2, 'x': 0}, 'u': {'y': [1]}}, ['t.x', 'u.y'])
  """
  out, present, added = json.loads(json.dumps(recorded)), flatten(recorded), []
  for key in sorted(defaults):
    if key in present:
      continue
    node, *path = out, *key.split(".")
    for part in path[:-1]:
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        break
    else:
      node[path[-1]] = defaults[key]
      added.append(key)
  return out, added


def _resumable(line: str) -> bool:
  key = line.split(":", 1)[0]
  return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
  """Writes an .npz atomically: into a hidden temporary beside it (no `clips-*`/`group*` name a
  reader could take for the file), then renamed. A failed write (a full disk) removes the
  temporary and names `path`; a killed one leaves the old file or none. On object storage: one
  upload (an object appears whole or not at all)."""
  if storage.is_remote(path):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    storage.write_bytes(path, buf.getvalue())
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  try:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    tmp.unlink(missing_ok=True)
    if isinstance(e, OSError) and e.errno and not isinstance(e, FileNotFoundError):
      raise OSError(e.errno, e.strerror, str(path)) from e
    raise


def _stamp(path: Path) -> tuple[int, int]:
  st = path.stat()
  return st.st_size, st.st_mtime_ns


class GroupFile(NamedTuple):
  """A finished fold group's file."""
  group: int
  process: int
  path: Path


class Workdir:
  """One run folder. Names are properties/methods; nothing is touched until a method says so."""

  def __init__(self, path: str | os.PathLike):
    self.path = storage.as_path(path)  # pathlib.Path, or etils.epath.Path for gs://...
    self.remote = storage.is_remote(self.path)

  # -- names ----------------------------------------------------------------------------------
  config_file = property(lambda self: self.path / CONFIG)
  folds_file = property(lambda self: self.path / FOLDS)
  results_file = property(lambda self: self.path / RESULTS)
  # The event files being written: on object storage in a host-local folder, copied to the
  # workdir's tensorboard/ after each epoch (`publish_tensorboard`).
  tensorboard_dir = property(lambda self: (storage.local_dir(self.path) / "tensorboard"
                                           if self.remote else self.path / "tensorboard"))
  # On object storage, caches and inputs stay on this host's disk (hosts share none).
  data_dir = property(lambda self: (storage.local_dir(self.path) / "data" if self.remote
                                    else self.path / "data"))
  data_is_host_local = property(lambda self: self.remote)
  frame_hashes_file = property(lambda self: self.data_dir / "frame-hashes.json")

  def report(self, name: str) -> Path:
    """Path of a report: one of `REPORTS` ('results', 'predictions', 'confusion', ...)."""
    return self.path / REPORTS[name]

  def generated_data(self, name: str) -> Path:
    """Where a generated database (data.root '') is written."""
    return self.data_dir / name

  @staticmethod
  def group_name(group: int, process: int) -> str:
    return f"group{group:03d}_process{process:03d}"

  def group_file(self, group: int, process: int) -> Path:
    return self.path / "folds" / f"{self.group_name(group, process)}.npz"

  def checkpoint_dir(self, group: int, process: int) -> Path:
    return self.path / "checkpoints" / self.group_name(group, process)

  def lock_file(self, process: int = 0) -> Path:
    return self.path / (".lock" if process == 0 else f".lock-process{process:03d}")

  def clip_cache(self, config_key: str, data_key: str) -> Path:
    return self.data_dir / f"clips-{config_key}-{data_key}.npz"

  def clip_caches(self, config_key: str = "*") -> list[Path]:
    """The decoded-clip caches there are (of one config key, or all), sorted."""
    return sorted(self.data_dir.glob(f"clips-{config_key}-*.npz"))

  # -- TensorBoard on object storage ----------------------------------------------------------
  def fetch_tensorboard(self) -> None:
    """Object storage: makes the host-local event folder a copy of the workdir's tensorboard/
    (a resumed run appends to the stream so far, whichever host it runs on). Local: nothing."""
    if not self.remote:
      return
    local, remote = self.tensorboard_dir, self.path / "tensorboard"
    local.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in remote.iterdir()} if remote.is_dir() else set()
    for p in local.iterdir():
      if p.name not in names:
        p.unlink()
    for name in sorted(names):
      (local / name).write_bytes((remote / name).read_bytes())
    # What was fetched is published again only once this process changed it: the other
    # processes' event files, fetched too, stay theirs.
    self._fetched = {p.name: _stamp(p) for p in local.iterdir()}

  def publish_tensorboard(self) -> None:
    """Object storage: copies the host-local event files to the workdir's tensorboard/ (each
    one upload, whole). Local: nothing (they are written there)."""
    if not self.remote or not self.tensorboard_dir.is_dir():
      return
    fetched = getattr(self, "_fetched", {})
    for p in sorted(self.tensorboard_dir.iterdir()):
      if p.is_file() and fetched.get(p.name) != _stamp(p):
        storage.write_bytes(self.path / "tensorboard" / p.name, p.read_bytes())
        fetched.pop(p.name, None)

  # -- the folder and its lock ----------------------------------------------------------------
  def create(self) -> None:
    """Makes the folder; a clear error if the path is a file or cannot be created here."""
    p = self.path
    if self.remote:
      self._create_remote()
      return
    try:
      os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
      pass  # made below, or named there (a file as a parent)
    except OSError as e:  # a name over 255 bytes or a path over 4096, a link loop, ...
      shorter = " shorter" if e.errno == errno.ENAMETOOLONG else ""
      raise WorkdirError(f"--workdir {str(p)[:120]}{'...' if len(str(p)) > 120 else ''} cannot "
                         f"be used: {e.strerror}; pass a{shorter} path to a folder") from None
    if p.exists() and not p.is_dir():
      raise WorkdirError(f"--workdir {p} is a file, not a folder: pass the path of a folder "
                         "(it is created if missing)")
    if p.is_dir():
      self._refuse_foreign()
      return
    parent = p.absolute().parent
    while not parent.exists():
      parent = parent.parent
    if not parent.is_dir():
      raise WorkdirError(f"cannot create the workdir {p}: {parent} is a file, not a folder")
    if not _writable(parent):
      raise WorkdirError(f"cannot create the workdir {p}: this user may not write in {parent}; "
                         "pass a --workdir in a folder you can write")
    try:
      p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise WorkdirError(f"cannot create the workdir {p}: {e.strerror}") from None

  def _create_remote(self) -> None:
    p = self.path
    try:
      if p.exists() and not p.is_dir():
        raise WorkdirError(f"--workdir {p} is an object, not a folder: pass the path of a folder")
      if p.is_dir():
        self._refuse_foreign()
        return
      p.mkdir(parents=True, exist_ok=True)
    except WorkdirError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # gcsfs: no bucket, no credentials
      raise WorkdirError(f"cannot use the workdir {p} ({type(e).__name__}: {str(e)[:300]}); "
                         "check that the bucket exists and that this machine's credentials "
                         "may write it") from None

  def _refuse_foreign(self) -> None:
    """An existing folder with other content and nothing of a run (a home folder, a data folder
    passed as --workdir by mistake) is refused: a run would mix its files into it."""
    known = {CONFIG, FOLDS, *REPORTS.values(), "data", "checkpoints", "folds", "tensorboard"}
    try:
      entries = sorted(p.name for p in self.path.iterdir())
    except OSError:
      return  # unreadable: the lock and the reads name the problem
    entries = [e for e in entries if not e.startswith(".") or e.startswith(".lock")]
    if not entries or any(e in known or e.startswith(".lock") for e in entries):
      return  # empty (hidden files like .DS_Store aside), or a run's
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise WorkdirError(
        f"--workdir {self.path} is a folder with other content ({shown}) and no cmnet_jax run in "
        "it; a run writes config.json, data/, checkpoints/ and its reports there. Pass a new or "
        f"empty folder (e.g. --workdir={self.path / 'cmnet_run'}); nothing was written")

  def writable(self) -> bool:
    """Whether this user may write in the workdir (False: only re-printing works). On object
    storage the first write says so (an error naming the object)."""
    return True if self.remote else _writable(self.path)

  @contextlib.contextmanager
  def lock(self, process: int = 0, *, shared: bool = False) -> Iterator[None]:
    """Holds the workdir's lock file for a run (`shared`: a read-only re-print).

    An OS lock (flock): the kernel frees it when the run ends, however it ends (kill -9
    included), so a dead run never leaves a stale lock. On object storage, a run marker
    (`storage.RunMarker`: created only if absent, refreshed while the run lives, taken over
    once abandoned).
    """
    path = self.lock_file(process)
    if self.remote:
      holder = (f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} ({' '.join(sys.argv)[:300]})")
      with storage.RunMarker(path, holder):
        yield
      return
    # Never through a link (a planted `.lock -> ~/.bashrc` would be truncated and written) and
    # never blocking on a FIFO; created with the umask's mode.
    flags = ((os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT)
             | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
      fd = os.open(path, flags, 0o666)
    except OSError as e:
      if path.is_symlink() or e.errno == errno.ELOOP:
        raise WorkdirError(self._not_a_lock(path, f"a symbolic link (to {os.readlink(path)})")
                           ) from None
      if e.errno == errno.EISDIR:
        raise WorkdirError(self._not_a_lock(path, "a folder")) from None
      if shared and e.errno in (errno.ENOENT, errno.EACCES, errno.EROFS):
        yield  # no lock file and no right to make one: nothing here will be written
        return
      raise WorkdirError(f"cannot open the workdir's lock file {path} ({e.strerror}); a run "
                         "holds it while it uses the workdir") from None
    try:
      st = os.fstat(fd)
      if not stat.S_ISREG(st.st_mode):
        raise WorkdirError(self._not_a_lock(path, "not a regular file"))
      if st.st_nlink > 1:
        raise WorkdirError(self._not_a_lock(path, f"a file with {st.st_nlink} hard links (the "
                                                  "others are other files' names)"))
      try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = os.pread(fd, 500, 0).decode(errors="replace").strip() or "another run"
        raise WorkdirError(f"{self.path} is in use by {holder} (it holds the lock {path}); "
                           "wait for it to finish, or pass another --workdir") from None
      if not shared:
        info = (f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} ({' '.join(sys.argv)[:300]})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode() + b"\n", 0)
        if process == 0:
          removed = self._remove_partial_writes()
          if removed:
            print(f"note: removed {len(removed)} partial file(s) left in {self.path} by an "
                  f"interrupted write: {', '.join(removed[:5])}{' ...' if len(removed) > 5 else ''}")
      yield
    finally:
      os.close(fd)

  def _remove_partial_writes(self) -> list[str]:
    """Removes the temporaries of writes a kill interrupted (process 0's files only: config,
    folds.json, the reports, its fold-group files, the clip cache); called holding the lock."""
    names = [CONFIG, FOLDS, *REPORTS.values()]
    found = [p for n in names for p in self.path.glob(f".{n}.*.tmp")]
    found += list((self.path / "folds").glob(".group*_process000.npz.tmp*"))
    found += list((self.path / "folds").glob("group*_process000.npz.tmp*.npz"))  # older names
    found += list(self.data_dir.glob(".clips-*.npz.tmp*"))
    found += list(self.data_dir.glob("clips-*.npz.tmp*.npz"))
    removed = []
    for f in sorted(set(found)):
      if f.is_file() and not f.is_symlink():
        f.unlink(missing_ok=True)
        removed.append(str(f.relative_to(self.path)))
    return removed

  def _not_a_lock(self, path: Path, what: str) -> str:
    return (f"{path} is {what}, not the lock file a run makes there (a plain file it writes its "
            f"pid into); nothing was written through it. A run never makes one: remove it (rm "
            f"{'-r ' if path.is_dir() and not path.is_symlink() else ''}{path}) and run the "
            "command again")

  # -- what is trained ------------------------------------------------------------------------
  def group_files(self) -> list[GroupFile]:
    """The finished fold groups' files, sorted."""
    if self.remote:
      storage.fresh_listings(self.path)
    out = []
    for p in sorted((self.path / "folds").glob("group*_process*.npz")):
      g, _, q = p.stem[len("group"):].partition("_process")
      if g.isdigit() and q.isdigit():
        out.append(GroupFile(int(g), int(q), p))
    return out

  def checkpoint_steps(self, group: int, process: int) -> list[int]:
    """Epochs of the complete checkpoints of a fold group (folders named by their epoch)."""
    return storage.complete_steps(self.checkpoint_dir(group, process))

  def final_checkpoint_advice(self, group: int, process: int, final_epoch: int) -> str:
    """What to do when a fold group's final checkpoint is missing or damaged."""
    d, steps = self.checkpoint_dir(group, process), self.checkpoint_steps(group, process)
    earlier = [s for s in steps if s < final_epoch]
    if final_epoch not in steps and not self.group_file(group, process).exists():
      return (f"training has not finished (checkpoints at epochs {steps or 'none'}): run "
              f"python run.py --workdir={self.path} (same config) to resume it")
    start = (f"the checkpoint at epoch {earlier[-1]}" if earlier
             else "scratch (no earlier checkpoint)")
    return (f"Eval and predict use the final checkpoint (epoch {final_epoch}) only. To make it "
            f"again, move it away (mv {d / str(final_epoch)} {d / str(final_epoch)}.damaged) and "
            f"run python run.py --workdir={self.path} (same config): it trains this fold group "
            f"again from {start} (same result) and writes it")

  def trained(self) -> list[str]:
    """What this workdir holds of a training run, one phrase per item ([] = nothing)."""
    out = [f"finished fold group {g.path.name}" for g in self.group_files()]
    root = self.path / "checkpoints"
    for d in sorted(root.iterdir()) if root.is_dir() else []:
      steps = storage.complete_steps(d)
      if steps:
        out.append(f"checkpoints of {d.name} at epoch{'s' * (len(steps) > 1)} "
                   + ", ".join(map(str, steps)))
    return out

  def is_finished(self) -> bool:
    """Whether a run finished here (its results.json exists)."""
    return self.results_file.is_file()

  # -- config.json ----------------------------------------------------------------------------
  def _read_json(self, path: Path, what: str) -> Optional[dict]:
    if not path.exists():
      return None
    try:
      value = json.loads(path.read_text())
      if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
      return value
    except (OSError, ValueError) as e:
      raise WorkdirError(f"{path} cannot be read ({type(e).__name__}: {str(e)[:200]}); it "
                         f"should hold {what}. {self._fix_damaged(path)}") from None

  def _fix_damaged(self, path: Path) -> str:
    if not self.trained():
      return f"Nothing is trained in {self.path} yet: delete {path} and run the command again."
    return (f"Delete it and run the same command again to write it anew (this workdir holds "
            f"{'; '.join(self.trained())}, which must match that command's config), or pass a "
            "new --workdir.")

  def read_config(self) -> Optional[dict]:
    """The recorded config as a dict (None if there is none); an error naming a damaged file."""
    return self._read_json(self.config_file, "the run's config")

  def load_config(self):
    """The recorded config as a ConfigDict, for eval and predict; an error if there is none."""
    import ml_collections  # pylint: disable=g-import-not-at-top
    recorded = self.read_config()
    if recorded is None:
      raise WorkdirError(f"{self.config_file} does not exist: {self.path} holds no trained run "
                         "(train first: python run.py --workdir=...)")
    # Keys added to the code since it was recorded: their defaults (the earlier behaviour).
    return ml_collections.ConfigDict(with_defaults(recorded, config_defaults(recorded))[0])

  def check_config(self, config) -> list[str]:
    """Whether `config` may run here; returns notes to print, raises WorkdirError if not.

    Same config: []. Nothing trained yet: notes saying the new config replaces the old one.
    Trained: only `RESUMABLE` keys may differ (notes list them); any other difference is an
    error naming every differing key (old -> new) and what to do.
    """
    recorded = self.read_config()
    if recorded is None:
      return []
    diff = config_diff(recorded, json.loads(config.to_json_best_effort(sort_keys=True)),
                       config_defaults(recorded))
    if not diff:
      return []
    trained = self.trained()
    listing = "".join(f"\n  {line}" for line in diff)
    if not trained:
      return [f"note: {self.config_file} held the config of a run that trained nothing; this "
              f"command's config replaces it:{listing}"]
    fixed = [line for line in diff if not _resumable(line)]
    if not fixed:
      return [f"note: resuming with other values of keys that change neither what is trained "
              f"nor on which data:{listing}"]
    keys = ", ".join(line.split(":", 1)[0] for line in fixed)
    raise WorkdirError(
        f"{self.config_file} holds the config this workdir was trained with, and this "
        f"command's config differs in {len(fixed)} key{'s' * (len(fixed) > 1)} (recorded -> "
        f"this command):{''.join(chr(10) + '  ' + l for l in fixed)}\n"
        f"The workdir holds {'; '.join(trained)}, trained with the recorded values. To resume "
        f"or re-print this run, change {keys} back; to train with the new values, pass a new "
        f"--workdir. (Only {', '.join(r + ('*' if r.endswith('.') else '') for r in RESUMABLE)}"
        " may change once something is trained; before that, a new config replaces the old.)")

  def write_config(self, config) -> None:
    """Records the run's config (call once its data loaded)."""
    from cmnet_jax import reports  # pylint: disable=g-import-not-at-top
    reports.atomic_write(self.config_file, config.to_json_best_effort(sort_keys=True, indent=2))

  # -- folds.json: class names, held-out subjects, the data ------------------------------------
  def read_folds(self) -> dict:
    """folds.json ({'class_names', 'test_subjects', ...}); an error naming the file and the fix."""
    meta = self._read_json(self.folds_file, "the class names and held-out subjects of the run")
    if meta is None:
      raise WorkdirError(f"{self.folds_file} does not exist: {self.path} holds no trained run "
                         "(it is written when training starts); train first with python run.py "
                         f"--workdir={self.path}")
    return meta

  def check_data(self, fingerprint: str, clips: list[str],
                 legacy_fingerprint: Optional[str] = None) -> list[str]:
    """Refuses data other than those this workdir trained on; returns notes to print.

    `legacy_fingerprint`: the same data's format-1 fingerprint (paths and sizes only), which a
    folds.json written before `DATA_FINGERPRINT_FORMAT` 2 records; matching it is accepted with
    a note (the next folds.json records the content fingerprint).
    """
    if not self.folds_file.exists():
      return []
    meta = self._read_json(self.folds_file, "the class names, held-out subjects and clips")
    old = meta.get("data_fingerprint")
    if old is None:
      return [f"note: {self.folds_file} predates data fingerprints; recording them now"]
    recorded_format = meta.get("data_fingerprint_format", 1)
    if recorded_format == DATA_FINGERPRINT_FORMAT and old == fingerprint:
      return []
    if recorded_format == 1 and legacy_fingerprint is not None and old == legacy_fingerprint:
      return [f"note: {self.folds_file} was written by an older version whose data fingerprint "
              "covers the frame files' names and sizes, not their contents; those match, so the "
              "contents are recorded from now on (a change of pixels at the same file size made "
              "before this command cannot be detected)"]
    if recorded_format not in (1, DATA_FINGERPRINT_FORMAT):
      raise WorkdirError(f"{self.folds_file} records a data fingerprint of format "
                         f"{recorded_format!r}, which this version does not know (it writes "
                         f"format {DATA_FINGERPRINT_FORMAT}): use the cmnet_jax version that "
                         "trained this workdir, or pass a new --workdir")
    before = meta.get("clips", [])
    removed = [c for c in before if c not in set(clips)]
    added = [c for c in clips if c not in set(before)]
    what = (f"{len(removed)} clips gone (e.g. {removed[:3]}), {len(added)} new (e.g. "
            f"{added[:3]})" if removed or added else
            "the same clips in another order" if before != clips else
            "the same clips with other annotation values or frame files")
    trained = self.trained()
    if not trained:
      return [f"note: the data differ from those recorded in {self.folds_file} ({what}); "
              "nothing was trained on them, so the new data replace them"]
    raise WorkdirError(
        f"the data changed since this workdir was trained: {self.folds_file} records "
        f"{len(before)} clips, the annotation and frames now give {len(clips)} ({what}). This "
        f"workdir holds {'; '.join(trained)} of the old data; nothing was overwritten. Restore "
        "the annotation and frames as they were to resume or re-print this run, or pass a new "
        "--workdir to train on the new data.")

  def write_folds(self, class_names, test_subjects, fingerprint: str, clips: list[str]) -> None:
    from cmnet_jax import reports  # pylint: disable=g-import-not-at-top
    reports.atomic_write(self.folds_file, json.dumps({
        "class_names": list(class_names), "test_subjects": list(test_subjects),
        "data_fingerprint": fingerprint, "data_fingerprint_format": DATA_FINGERPRINT_FORMAT,
        "clips": list(clips)}, indent=1))

  # -- fold-group results ---------------------------------------------------------------------
  def save_group(self, group: int, process: int, arrays: dict[str, Any]) -> Path:
    """Writes a fold group's arrays atomically (a kill leaves the old file or none)."""
    path = self.group_file(group, process)
    _save_npz(path, arrays)
    return path

  def load_group(self, path: Path) -> dict[str, np.ndarray]:
    """A fold group's arrays; an error naming a damaged file and how to make it again."""
    try:
      with np.load(io.BytesIO(path.read_bytes()) if self.remote else path) as f:
        out = {k: f[k] for k in f.files}
      if "fold_ids" not in out:
        raise ValueError("no fold_ids array")
      return out
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
      raise WorkdirError(
          f"{path} is damaged ({type(e).__name__}: {str(e)[:200]}); it holds a finished fold "
          "group's held-out outputs. Delete it and run the same command again: the group is "
          "evaluated again from its final checkpoint (or trained again if it has none)") from None

  def check_groups(self) -> None:
    """Reads every finished group's file: a damaged one is named before any work."""
    for g in self.group_files():
      self.load_group(g.path)

  # -- the decoded-clip cache -----------------------------------------------------------------
  def load_clip_cache(self, path: Path) -> Optional[dict[str, np.ndarray]]:
    """The cached arrays, or None when absent or unreadable (a cache: decoded again, noted)."""
    if not path.exists():
      return None
    try:
      with np.load(path) as f:
        return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      warnings.warn(f"{path} (decoded-clip cache) cannot be read ({type(e).__name__}); "
                    "decoding the clips again", RuntimeWarning, stacklevel=2)
      return None

  def save_clip_cache(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes the cache atomically and removes the caches of other data under the same config."""
    _save_npz(path, arrays)
    for old in self.clip_caches(path.name.split("-")[1]):
      if old != path:
        old.unlink(missing_ok=True)

  def wait_for_clip_cache(self, config_key: str, data_key: str | None = None,
                          timeout_s: float = 3600.0) -> None:
    """Waits (processes > 0) until process 0 wrote the cache (any data key if None)."""
    pattern = f"clips-{config_key}-{data_key or '*'}.npz"
    deadline = time.monotonic() + timeout_s
    while not list(self.data_dir.glob(pattern)):
      if time.monotonic() > deadline:
        raise TimeoutError(f"{self.data_dir / pattern} never appeared: process 0 should have "
                           "written it")
      time.sleep(1.0)
