"""Checkpoints of the fold-stacked train state: the only module that imports Orbax.

A checkpoint is one step directory managed by `orbax.checkpoint.CheckpointManager`, holding two
items: `state`, a pytree of arrays (NumPy, or `jax.Array`s sharded across devices with a
pmap-style leading axis), and `extra`, a small JSON dict (epoch, rng, loss history, ...) in which
NumPy arrays survive the round trip exactly (dtype included, e.g. a uint32 rng).

Saves are synchronous. The trainer saves every few epochs, each epoch being a compiled scan of
many steps, so the wait is a small share of the run; in exchange a save that returned is on disk
(a SIGKILL right after it cannot lose it), nothing reads the state while the next epoch donates
its buffers, and no background thread outlives a failed run.

Orbax writes a step into `<step>.orbax-checkpoint-tmp-*` and renames it when complete, and its
OCDBT files carry CRC-32C checksums, so an interrupted save leaves a temporary folder and a
damaged file fails to read. `restore_latest` warns about and removes such leftovers, tries the
newest checkpoint first, and falls back, with a warning, to older ones when a checkpoint cannot be
read; the unreadable ones are renamed `<step>.corrupt` (kept for inspection, ignored afterwards)
so that the resumed run can save those steps again. A checkpoint whose arrays do not match the
template (another config) is an error, never a reason to fall back or start afresh.
`restore_step` reads one given checkpoint and writes nothing (eval and predict use the final one
only, and may run on a read-only workdir).

On object storage (`gs://...`, `cmnet_jax.storage`) Orbax writes a step under its final name and
marks it finished with `commit_success.txt`; a step folder without it is an interrupted save,
removed with the same warning as a temporary folder locally (`storage.complete_steps`).

Noise Orbax makes that says nothing to a user is kept off the terminal: its items are registered
with their handlers (else every metadata read warns "Item ... could not be restored"), and when a
damaged checkpoint fails to read, the reads still in flight find their asyncio event loop closed
and print a "RuntimeError: Event loop is closed" traceback each through `sys.unraisablehook`;
those, and only those, are dropped (`_quiet_closed_loop`). The warning naming the damaged
checkpoint stays.
"""
from __future__ import annotations

import os
import shutil
import sys
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from cmnet_jax import storage

_TMP_MARK = ".orbax-checkpoint-tmp"
_ARRAY_TAG = "__ndarray__"


class CheckpointError(RuntimeError):
  """Checkpoints exist but none of them can be restored (or the one asked for cannot)."""


class CheckpointSaveError(CheckpointError):
  """A checkpoint could not be written (disk full, folder not writable): names the folder, the
  cause and the checkpoints kept; resuming is safe (the partial save is removed)."""


def write_failure(e: BaseException) -> str:
  """The cause of a failed write in words, when it is a full disk or a folder this user may not
  write: from an OSError's errno, or the `[os_error_code='N']` TensorStore puts in the errors
  Orbax raises ('' otherwise).

  >>> write_failure(OSError(28, 'No space left on device'))
  'the disk is full (No space left on device)'
  >>> write_failure(ValueError("... Failed to write 642338 bytes ... [os_error_code='13']"))
  'this user may not write there (Permission denied)'
  """
  import errno  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  code = getattr(e, "errno", None)
  if not isinstance(code, int):
    m = re.search(r"os_error_code='?(\d+)", str(e))
    code = int(m.group(1)) if m else None
  if code is None:
    return ""
  words = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EACCES: "this user may not write there",
           errno.EPERM: "this user may not write there",
           errno.EROFS: "the file system is read-only"}.get(code)
  return f"{words} ({os.strerror(code)})" if words else ""


class CheckpointMismatchError(ValueError):
  """A checkpoint's arrays do not match the template (a different model, layout or config)."""


def _encode(x: Any, where: str = "extra") -> Any:
  """JSON-able form of `x`; NumPy arrays and scalars become tagged lists / Python numbers."""
  if isinstance(x, dict):
    bad = [k for k in x if not isinstance(k, str)]
    if bad:
      raise TypeError(f"{where}: dict keys must be str, got {bad[0]!r}")
    return {k: _encode(v, f"{where}[{k!r}]") for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_encode(v, f"{where}[{i}]") for i, v in enumerate(x)]
  if isinstance(x, (np.ndarray, jax.Array)):
    a = np.asarray(x)
    return {_ARRAY_TAG: a.tolist(), "dtype": a.dtype.str, "shape": list(a.shape)}
  if isinstance(x, np.generic):
    return x.item()
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  raise TypeError(f"{where}: cannot store {type(x).__name__} in a checkpoint's JSON extra")


def _decode(x: Any) -> Any:
  if isinstance(x, dict):
    if _ARRAY_TAG in x:
      return np.asarray(x[_ARRAY_TAG], dtype=np.dtype(x["dtype"])).reshape(x["shape"])
    return {k: _decode(v) for k, v in x.items()}
  if isinstance(x, list):
    return [_decode(v) for v in x]
  return x


def _leaf_specs(tree: Any) -> dict[tuple[str, ...], tuple[tuple[int, ...], np.dtype]]:
  """{normalised key path: (shape, dtype)}; dict keys, attributes and indices all become str."""
  def name(k):
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {tuple(name(k) for k in path): (tuple(leaf.shape), np.dtype(leaf.dtype))
          for path, leaf in flat}


def _check_match(found: Any, template: Any, where: str) -> None:
  got, want = _leaf_specs(found), _leaf_specs(template)
  for path in sorted(set(got) | set(want)):
    if got.get(path) != want.get(path):
      raise CheckpointMismatchError(
          f"{where}: array {'/'.join(path)} is {got.get(path, 'missing')} in the checkpoint but "
          f"{want.get(path, 'absent')} in the template (shape, dtype); this checkpoint belongs to "
          "a different model or fold layout; use a new workdir or delete its checkpoints")


def _quiet_closed_loop(previous=sys.unraisablehook):
  """`sys.unraisablehook` without the 'Event loop is closed' errors of a failed restore's
  leftover reads (see the module docstring); everything else goes to the previous hook."""
  def hook(unraisable):
    if (unraisable.exc_type is RuntimeError
        and str(unraisable.exc_value) == "Event loop is closed"):
      return
    previous(unraisable)
  hook.quiets_closed_loop = True
  return hook


if not getattr(sys.unraisablehook, "quiets_closed_loop", False):
  sys.unraisablehook = _quiet_closed_loop()


def _handlers(directory=None) -> dict[str, Any]:
  """The items' handlers. On object storage the arrays are written one zarr array per leaf, not
  into one OCDBT database: OCDBT's concurrent conditional writes of its manifest failed against
  the local Cloud Storage emulator the tests use ("Malformed StorageGeneration" with 60 leaves,
  fine with 4), so that is the layout tested; Orbax reads either layout back by itself."""
  ocdbt = directory is None or not storage.is_remote(directory)
  return {"state": ocp.StandardCheckpointHandler(use_ocdbt=ocdbt),
          "extra": ocp.JsonCheckpointHandler()}


def _restore_args(template: Any) -> Any:
  target = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), template)
  return ocp.args.Composite(state=ocp.args.StandardRestore(target), extra=ocp.args.JsonRestore())


def restore_step(directory: str | os.PathLike, step: int,
                 template: Any) -> tuple[Any, dict[str, Any]]:
  """`(state, extra)` of checkpoint `step` in `directory`, read without writing anything.

  Raises:
    CheckpointError: it does not exist or cannot be read (the message names its folder and
      the epochs that do exist).
    CheckpointMismatchError: its arrays differ from the template.
  """
  path = _absolute(directory) / str(step)
  steps = storage.complete_steps(path.parent)
  others = f"checkpoints there: epochs {steps}" if steps else "no other checkpoint there"
  if step not in steps:
    raise CheckpointError(f"checkpoint {path} does not exist ({others})")
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler(**_handlers()))
  try:
    meta = checkpointer.metadata(path).item_metadata["state"]
    meta_tree = getattr(meta, "tree", None)
  except Exception:  # pylint: disable=broad-except  # unreadable metadata: restore decides
    meta_tree = None
  if meta_tree is not None:
    _check_match(meta_tree, template, f"checkpoint {path}")
  try:
    restored = checkpointer.restore(path, args=_restore_args(template))
    state, extra = restored.state, restored.extra
    if not isinstance(extra, dict):
      raise ValueError(f"its extra item is {type(extra).__name__}, expected a JSON object")
  except Exception as e:  # pylint: disable=broad-except  # any read failure = damaged
    raise CheckpointError(f"checkpoint {path} is damaged ({type(e).__name__}: "
                          f"{str(e)[:200]}) ({others})") from None
  finally:
    checkpointer.close()
  _check_match(state, template, f"checkpoint {path}")
  return state, _decode(extra)


def saved_slots(directory: str | os.PathLike) -> int | None:
  """The leading (fold slot) size of the state in the newest checkpoint of `directory`, read
  from its metadata; None when there is none or it cannot be read."""
  d = _absolute(directory)
  steps = storage.complete_steps(d)
  if not steps:
    return None
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler(**_handlers()))
  try:
    tree = checkpointer.metadata(d / str(steps[-1])).item_metadata["state"].tree
    return int(jax.tree.leaves(tree)[0].shape[0])
  except Exception:  # pylint: disable=broad-except  # unreadable: the restore will say so
    return None
  finally:
    checkpointer.close()


def _absolute(directory):
  """A local folder made absolute; an object-storage path (etils.epath) as it is."""
  path = storage.as_path(directory)
  return path if storage.is_remote(path) else path.absolute()


def is_supported() -> bool:
  """Whether `CheckpointStore` works here: single-process runs only (see its NotImplementedError).

  >>> is_supported()
  True
  """
  return jax.process_count() == 1


def _remove_tree(path) -> None:
  if storage.is_remote(path):
    try:
      path.rmtree()
    except OSError:
      pass
  else:
    shutil.rmtree(path, ignore_errors=True)


class CheckpointStore:
  """Keeps the latest `keep` checkpoints of one training run (or one fold group) in `directory`.

  `save(step, state, extra)` writes a checkpoint (the caller decides when: every N epochs and at
  the end); `restore_latest(template)` returns `(step, state, extra)` of the newest readable one.
  Single-process runs only (`is_supported()`): in a multi-process run each process holds other
  folds in process-local arrays, which Orbax cannot save per process.

  >>> import tempfile
  >>> with tempfile.TemporaryDirectory() as d, CheckpointStore(d) as store:
  ...   store.save(5, {'w': np.ones(3, np.float32)}, {'epoch': 5, 'rng': np.array([1, 2], np.uint32)})
  ...   step, state, extra = store.restore_latest({'w': np.zeros(3, np.float32)})
  >>> step, state['w'].tolist(), extra['epoch'], extra['rng'].dtype
  (5, [1.0, 1.0, 1.0], 5, dtype('uint32'))
  """

  def __init__(self, directory: str | os.PathLike, *, keep: int = 2):
    """`keep` >= 1 checkpoints are kept; fallback to an older one needs `keep` >= 2."""
    if keep < 1:
      raise ValueError(f"keep (checkpoints to keep) must be >= 1, got {keep}")
    self.directory = _absolute(directory)
    self.directory.mkdir(parents=True, exist_ok=True)
    if not is_supported():
      raise NotImplementedError(
          f"CheckpointStore({self.directory}): this is process {jax.process_index()} of "
          f"{jax.process_count()}. Orbax saves global arrays only: it refuses process-local "
          "(pmap) arrays and writes NumPy arrays from process 0 alone, so per-process fold "
          "checkpoints would be lost. Check checkpoint.is_supported() and resume multi-process "
          "runs from finished fold groups instead.")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_handlers=_handlers(self.directory))

  def steps(self) -> list[int]:
    """Steps of the finished checkpoints on disk, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, extra: dict[str, Any] | None = None) -> None:
    """Writes `state` (pytree of arrays) and `extra` (JSON-able dict; NumPy arrays allowed)."""
    if step in self.steps():
      raise ValueError(f"a checkpoint for step {step} already exists in {self.directory}")
    encoded = _encode(dict(extra or {}))
    try:
      self._manager.save(int(step), args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(encoded)), force=True)
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # Orbax raises ValueError, OSError, ...
      cause = write_failure(e) or f"{type(e).__name__}: {str(e)[:300]}"
      for tmp in self.directory.glob(f"{step}{_TMP_MARK}*"):  # the partial save, if it can go
        _remove_tree(tmp)
      for tmp in storage.uncommitted_steps(self.directory):
        _remove_tree(tmp)
      kept = self.steps()
      saved = f"epochs {', '.join(map(str, kept))}" if kept else "none yet"
      start = f"epoch {kept[-1]}" if kept else "the start"
      raise CheckpointSaveError(
          f"cannot save the checkpoint of epoch {step} in {self.directory}: {cause}. The "
          f"checkpoints saved before are intact ({saved}) and resuming is safe: free some space "
          "(or make the folder writable) and run the same command again; it resumes from "
          f"{start} (a partial save left behind is removed first)") from None

  def restore_latest(self, template: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """Newest readable checkpoint as `(step, state, extra)` (host NumPy arrays), or None when
    there is none.

    Args:
      template: pytree with the state's structure; leaves are arrays or `jax.ShapeDtypeStruct`
        (only shape and dtype are used).

    Raises:
      CheckpointMismatchError: a checkpoint's arrays differ from the template.
      CheckpointError: checkpoints exist but none can be read.
    """
    self._remove_interrupted_saves()
    failures: list[tuple[int, str]] = []
    for step in reversed(self.steps()):
      where = f"checkpoint {self.directory / str(step)}"
      try:
        meta = self._manager.item_metadata(step)["state"]
        meta_tree = getattr(meta, "tree", None)
      except Exception:  # pylint: disable=broad-except  # unreadable metadata: restore decides
        meta_tree = None
      if meta_tree is not None:
        _check_match(meta_tree, template, where)
      try:
        restored = self._manager.restore(step, args=_restore_args(template))
        state, extra = restored.state, restored.extra
        if not isinstance(extra, dict):
          raise ValueError(f"its extra item is {type(extra).__name__}, expected a JSON object")
      except Exception as e:  # pylint: disable=broad-except  # any read failure = corrupt
        failures.append((step, f"{type(e).__name__}: {str(e)[:300]}"))
        warnings.warn(f"{where} is partial or corrupt ({failures[-1][1]}); falling back to the "
                      "previous checkpoint", RuntimeWarning, stacklevel=2)
        continue
      _check_match(state, template, where)
      self._set_aside([s for s, _ in failures])
      return step, state, _decode(extra)
    if failures:
      raise CheckpointError(
          f"none of the checkpoints in {self.directory} can be read: "
          + "; ".join(f"step {s}: {msg}" for s, msg in failures)
          + ". Delete the directory to start the run afresh.")
    return None

  def _remove_interrupted_saves(self) -> None:
    leftovers = sorted(self.directory.glob(f"*{_TMP_MARK}*"))
    for tmp in leftovers + storage.uncommitted_steps(self.directory):
      warnings.warn(f"removing {tmp}, left by an interrupted checkpoint save; resuming from the "
                    "previous checkpoint", RuntimeWarning, stacklevel=3)
      _remove_tree(tmp)
    self._manager.reload()

  def _set_aside(self, steps: list[int]) -> None:
    """Renames unreadable step folders `<step>.corrupt[.k]` so those steps can be saved again."""
    for step in steps:
      src = self.directory / str(step)
      dst, k = self.directory / f"{step}.corrupt", 1
      while dst.exists():
        dst, k = self.directory / f"{step}.corrupt.{k}", k + 1
      if src.exists():
        if storage.is_remote(src):
          src.rename(dst)  # object storage: a copy of the objects, then a delete
        else:
          os.replace(src, dst)
    if steps:
      self._manager.reload()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> "CheckpointStore":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
