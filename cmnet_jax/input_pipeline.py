"""From a config to the host arrays a run puts on the device once.

The clips of a database (or of the built-in synthetic generator, the default) are sampled to
`data.num_frames` frames anchored on onset/apex/offset: one deterministic sampling for evaluation
and `data.train_jitter_copies` jittered samplings for training (copy 0 is the deterministic one),
from which each training step picks one at random on the device. Decoded arrays are cached in
the workdir (`Workdir.clip_cache`), keyed on the config and on the data themselves, so that a
resumed run does not decode again and edited data are never read from a stale cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import ml_collections
import numpy as np

from cmnet_jax import datasets
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import hashes as hashes_lib
from cmnet_jax.datasets import registry


@dataclasses.dataclass
class ClipData:
  """A run's clips on the host. `N` clips, `J` jitter copies, `T` frames.

  Attributes:
    class_names: class names, index = label.
    labels: int32 `[N]`.
    subjects, clip_ids, datasets: `N` strings each.
    folds: LOSO folds (`cmnet_jax.datasets.loso_folds`).
    eval_frames: uint8 `[N, T, H, W, 3]`; eval_apex: int32 `[N]`.
    train_frames: uint8 `[N, J, T, H, W, 3]`; train_apex: int32 `[N, J]`.
    true_intensity: float32 `[N, T]` at the evaluation sampling (synthetic data only) or None.
    train_true_intensity: float32 `[N, J, T]` at the training samplings, or None.
  """
  class_names: tuple
  labels: np.ndarray
  subjects: tuple
  clip_ids: tuple
  datasets: tuple
  folds: list
  eval_frames: np.ndarray
  eval_apex: np.ndarray
  train_frames: np.ndarray
  train_apex: np.ndarray
  true_intensity: Optional[np.ndarray]
  train_true_intensity: Optional[np.ndarray] = None

  def device_data(self):
    from cmnet_jax.train_step import DeviceData  # pylint: disable=g-import-not-at-top
    known = self.true_intensity is not None and self.train_true_intensity is not None
    eval_i = self.true_intensity if known else np.zeros(self.eval_apex.shape + (
        self.eval_frames.shape[1],), np.float32)
    train_i = self.train_true_intensity if known else np.zeros(self.train_apex.shape + (
        self.train_frames.shape[2],), np.float32)
    return DeviceData(self.train_frames, self.train_apex.astype(np.int32), self.eval_frames,
                      self.eval_apex.astype(np.int32), self.labels.astype(np.int32),
                      train_i.astype(np.float32), eval_i.astype(np.float32))


class Source(NamedTuple):
  """A run's clip index and what identifies its data.

  fingerprint: sha256 of the index (every clip record in order: dataset, subject, clip id,
    onset/apex/offset, emotion, label, action units, frame numbers) and of each frame file's path
    relative to the root, size and content (sha256, cached on size and mtime_ns:
    `datasets.hashes`); recorded in folds.json (format `workdir.DATA_FINGERPRINT_FORMAT`), it
    tells whether a workdir's data changed (a moved or copied database keeps it).
  files_key: the index, frame paths, sizes and mtimes: the decoded-clip cache's data key.
  clips: 'dataset/subject/clip_id' of every clip, in index order.
  legacy_fingerprint: the format-1 fingerprint (paths and sizes, no content) that workdirs
    written before issue 23 recorded, to recognise their data (`Workdir.check_data`).
  hash_cache: the frames' content hashes, written by `load_clips` (a refused run writes nothing).
  """
  index: Any
  root: Path
  fingerprint: str
  files_key: str
  clips: list
  legacy_fingerprint: str = ""
  hash_cache: Optional[hashes_lib.HashCache] = None


def dataset_root(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir) -> Path:
  """Where the data are: `data.root`, or for a generated database a folder under the workdir."""
  if config.data.root:
    return Path(config.data.root).expanduser()
  if registry.get(config.data.name).generated:
    return wd.generated_data(config.data.name)
  raise datasets.DatasetError(
      f"config key data.root is empty: set --config.data.root to the folder where you unpacked "
      f"{config.data.name}")


def fingerprints(index, hash_cache: hashes_lib.HashCache | None = None
                 ) -> tuple[str, str, str]:
  """(fingerprint, files_key, legacy_fingerprint) of a `DatasetIndex` (see `Source`); frame
  contents are hashed through `hash_cache` (None: no cache, every frame is read)."""
  hash_cache = hash_cache or hashes_lib.HashCache(None)
  data, files, legacy = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
  head = json.dumps([index.name, list(index.class_names)]).encode()
  for h in (data, files, legacy):
    h.update(head)
  for c in index.clips:
    record = json.dumps([c.dataset, c.subject, c.clip_id, c.onset, c.apex, c.offset, c.emotion,
                         c.label, c.action_units, list(c.frame_numbers)]).encode()
    for h in (data, files, legacy):
      h.update(record)
    for path in c.frame_paths:
      st = os.stat(path)
      rel = os.path.relpath(path, index.root)
      rel = os.fsencode(rel)   # a name that is not UTF-8 (surrogate-escaped) as its bytes
      legacy.update(rel + f"\0{st.st_size}\n".encode())
      data.update(rel + f"\0{st.st_size}\0{hash_cache.digest(path)}\n".encode())
      files.update(rel + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  return data.hexdigest(), files.hexdigest(), legacy.hexdigest()


def read_source(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir) -> Source:
  """Indexes the config's database (process 0 generates a generated one first) and prints what
  the reader repaired or skipped."""
  name = config.data.name
  root = dataset_root(config, wd)
  if jax.process_index() == 0 or wd.data_is_host_local:  # gs:// workdir: every host its own
    registry.prepare(name, root, config)
  else:  # process 0 generates and decodes; the others must not race it
    wd.wait_for_clip_cache(_cache_key(config))
  index = registry.load_index(name, root, classes=config.data.classes or None,
                              annotation=config.data.annotation or None)
  index.print_report()
  cache = hashes_lib.HashCache(wd.frame_hashes_file)
  fingerprint, files_key, legacy = fingerprints(index, cache)
  return Source(index, root, fingerprint, files_key,
                [f"{c.dataset}/{c.subject}/{c.clip_id}" for c in index.clips], legacy, cache)


def _cache_key(config: ml_collections.ConfigDict) -> str:
  blob = json.dumps({"data": config.data.to_dict(), "synthetic": config.synthetic.to_dict(),
                     "seed": config.train.seed, "format": 2}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_clips(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir, source: Source, *,
               write_cache: bool = True) -> ClipData:
  """Samples and decodes every clip of `source`, or reads them from the workdir's cache.

  The cache is keyed on the config's data blocks and on the data (`Source.files_key`), so a
  sorted, shortened or edited annotation or changed frame files are decoded again; an unreadable
  cache is decoded again too (with a warning), and caches of other data are removed.
  """
  index, root = source.index, source.root
  own_cache = jax.process_index() == 0 or wd.data_is_host_local
  if write_cache and source.hash_cache is not None and own_cache:
    source.hash_cache.save()
  cache = wd.clip_cache(_cache_key(config), source.files_key[:16])
  if not own_cache:
    wd.wait_for_clip_cache(_cache_key(config), source.files_key[:16])
  arrays = wd.load_clip_cache(cache)
  if arrays is None:
    arrays = _decode(index, config)
    eval_positions, train_positions = arrays.pop("eval_positions"), arrays.pop("train_positions")
    truth = registry.true_intensity(config.data.name, root)
    if truth is not None:
      arrays["true_intensity"] = _true_intensity(index, truth, eval_positions)
      arrays["train_true_intensity"] = _true_intensity(index, truth, train_positions)
    if write_cache:
      wd.save_clip_cache(cache, arrays)
  clips = index.clips
  return ClipData(
      class_names=tuple(index.class_names),
      labels=np.array([c.label for c in clips], np.int32),
      subjects=tuple(c.subject for c in clips), clip_ids=tuple(c.clip_id for c in clips),
      datasets=tuple(c.dataset for c in clips), folds=list(datasets.loso_folds(index)),
      eval_frames=arrays["eval_frames"], eval_apex=arrays["eval_apex"],
      train_frames=arrays["train_frames"], train_apex=arrays["train_apex"],
      true_intensity=arrays.get("true_intensity"),
      train_true_intensity=arrays.get("train_true_intensity"))


def load(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> ClipData:
  """`load_clips(config, wd, read_source(config, wd))` for the workdir at `workdir`."""
  wd = workdir_lib.Workdir(workdir)
  return load_clips(config, wd, read_source(config, wd))


def _decode(index, config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  t, size, copies = config.data.num_frames, config.data.image_size, config.data.train_jitter_copies
  n = len(index.clips)
  out = {
      "eval_frames": np.zeros((n, t, size, size, 3), np.uint8),
      "eval_apex": np.zeros((n,), np.int32),
      "eval_positions": np.zeros((n, t), np.int64),
      "train_frames": np.zeros((n, copies, t, size, size, 3), np.uint8),
      "train_apex": np.zeros((n, copies), np.int32),
      "train_positions": np.zeros((n, copies, t), np.int64),
  }
  for i, clip in enumerate(index.clips):
    positions, apex = frames_lib.sample_frame_indices(
        len(clip.frame_paths), clip.apex_index, t, mode=config.data.frame_sampling)
    out["eval_frames"][i] = frames_lib.read_frames(clip, positions, image_size=size)
    out["eval_apex"][i], out["eval_positions"][i] = apex, positions
    out["train_frames"][i, 0], out["train_apex"][i, 0] = out["eval_frames"][i], apex
    out["train_positions"][i, 0] = positions
    for j in range(1, copies):
      rng = np.random.default_rng([config.train.seed, i, j])
      positions, apex = frames_lib.sample_frame_indices(
          len(clip.frame_paths), clip.apex_index, t, rng=rng, mode=config.data.frame_sampling)
      out["train_frames"][i, j] = frames_lib.read_frames(clip, positions, image_size=size)
      out["train_apex"][i, j], out["train_positions"][i, j] = apex, positions
  return out


def _true_intensity(index, truth: dict, positions: np.ndarray) -> np.ndarray:
  """The database's true intensity at each sampled frame position."""
  out = np.zeros(positions.shape, np.float32)
  for i, clip in enumerate(index.clips):
    curve = truth[(clip.subject, clip.clip_id)]
    out[i] = np.vectorize(lambda p: curve[clip.frame_numbers[int(p)]])(positions[i])
  return out
