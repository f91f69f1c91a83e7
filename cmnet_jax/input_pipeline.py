"""From a config to the host arrays a run puts on the device once.

The clips of a database (or of the built-in synthetic generator, the default) are sampled to
`data.num_frames` frames anchored on onset/apex/offset: one deterministic sampling for evaluation
and `data.train_jitter_copies` jittered samplings for training (copy 0 is the deterministic one),
from which each training step picks one at random on the device. Decoded arrays are cached in
`workdir/data/clips-<hash>.npz` so that a resumed run does not decode again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

import jax
import ml_collections
import numpy as np

from cmnet_jax import datasets
from cmnet_jax.datasets import frames as frames_lib


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


def dataset_root(config: ml_collections.ConfigDict, workdir: Path) -> Path:
  """Where the data are: `data.root`, or for synthetic data a folder under the workdir."""
  if config.data.root:
    return Path(config.data.root).expanduser()
  if config.data.name == "synthetic":
    return Path(workdir) / "data" / "synthetic"
  raise datasets.DatasetError(
      f"config key data.root is empty: set --config.data.root to the folder where you unpacked "
      f"{config.data.name}")


def load_index(config: ml_collections.ConfigDict, workdir: Path):
  """The dataset index of the config's database (generating the synthetic one if needed)."""
  root = dataset_root(config, workdir)
  if config.data.name == "synthetic":
    from cmnet_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
    synthetic.generate(config.synthetic, root)
    return datasets.load_index("casme2", root, classes="5class"), root
  index = datasets.load_index(config.data.name, root, classes=config.data.classes or None,
                              annotation=config.data.annotation or None)
  return index, root


def _cache_key(config: ml_collections.ConfigDict) -> str:
  blob = json.dumps({"data": config.data.to_dict(), "synthetic": config.synthetic.to_dict(),
                     "seed": config.train.seed, "format": 2}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> ClipData:
  """Reads (or generates), samples and decodes every clip; cached per data config."""
  workdir = Path(workdir)
  cache = workdir / "data" / f"clips-{_cache_key(config)}.npz"
  if jax.process_index() != 0:
    _wait_for(cache)  # process 0 generates/decodes; the others must not race it
  index, root = load_index(config, workdir)
  index.print_report()
  folds = datasets.loso_folds(index)
  if cache.exists():
    arrays = dict(np.load(cache))
  else:
    arrays = _decode(index, config)
    eval_positions, train_positions = arrays.pop("eval_positions"), arrays.pop("train_positions")
    if config.data.name == "synthetic":
      arrays["true_intensity"] = _true_intensity(index, root, eval_positions)
      arrays["train_true_intensity"] = _true_intensity(index, root, train_positions)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
  clips = index.clips
  return ClipData(
      class_names=tuple(index.class_names),
      labels=np.array([c.label for c in clips], np.int32),
      subjects=tuple(c.subject for c in clips), clip_ids=tuple(c.clip_id for c in clips),
      datasets=tuple(c.dataset for c in clips), folds=list(folds),
      eval_frames=arrays["eval_frames"], eval_apex=arrays["eval_apex"],
      train_frames=arrays["train_frames"], train_apex=arrays["train_apex"],
      true_intensity=arrays.get("true_intensity"),
      train_true_intensity=arrays.get("train_true_intensity"))


def _wait_for(path: Path, timeout_s: float = 3600.0) -> None:
  deadline = time.monotonic() + timeout_s
  while not path.exists():
    if time.monotonic() > deadline:
      raise TimeoutError(f"{path} never appeared: process 0 should have written it")
    time.sleep(1.0)


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


def _true_intensity(index, root: Path, positions: np.ndarray) -> np.ndarray:
  from cmnet_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
  # The side file keys subjects as the coding sheet writes them ('01'); the reader says 'sub01'.
  table = {(f"sub{subject}", clip_id): curve
           for (subject, clip_id), curve in synthetic.load_true_intensity(root).items()}
  out = np.zeros(positions.shape, np.float32)
  for i, clip in enumerate(index.clips):
    curve = table[(clip.subject, clip.clip_id)]
    out[i] = np.vectorize(lambda p: curve[clip.frame_numbers[int(p)]])(positions[i])
  return out
