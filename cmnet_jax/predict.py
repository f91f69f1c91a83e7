"""Class probabilities for a user's own clip from a trained workdir.

The fold models are restored from the workdir's final checkpoints; the prediction is the mean of
their softmax probabilities (or one named fold's). The clip is a folder of numbered frames; give
onset/apex/offset frame numbers, or take the whole folder with the apex guessed as the frame that
differs most from the first one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import jax
import ml_collections
import numpy as np

from cmnet_jax import checkpoint
from cmnet_jax import losses
from cmnet_jax import models
from cmnet_jax import reports
from cmnet_jax import train
from cmnet_jax import train_step as ts
from cmnet_jax.datasets import DatasetError
from cmnet_jax.datasets import frames as frames_lib


def load_config(workdir: Path) -> ml_collections.ConfigDict:
  path = Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a trained workdir "
                            "(train first with python run.py --workdir=...)")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_fold_params(workdir: Path, config: ml_collections.ConfigDict):
  """(model, class_names, {test_subject: params}) from the final checkpoint of every fold."""
  workdir = Path(workdir)
  meta = json.loads((workdir / "folds.json").read_text())
  class_names, subjects = meta["class_names"], meta["test_subjects"]
  model = models.build(config.model, len(class_names))
  tx = ts.make_optimizer(config.optim, config.train.num_epochs * config.train.steps_per_epoch)
  size, t = config.data.image_size, config.data.num_frames
  sample = np.zeros((1, t, size, size, 3), np.uint8)
  fold_params = {}
  for group_file in sorted((workdir / "folds").glob("group*_process*.npz")):
    fold_ids = np.load(group_file)["fold_ids"]
    template = jax.eval_shape(jax.vmap(lambda r: ts.init_state(model, tx, r, sample)),
                              jax.random.split(jax.random.PRNGKey(0), len(fold_ids)))
    store = checkpoint.CheckpointStore(workdir / "checkpoints" / group_file.stem)
    restored = store.restore_latest(template)
    store.close()
    if restored is None:
      raise checkpoint.CheckpointError(f"no checkpoint for {group_file.stem} in {workdir}")
    state = restored[1]
    for slot, fid in enumerate(fold_ids):
      if fid >= 0:
        fold_params[subjects[fid]] = jax.tree.map(lambda x, s=slot: x[s], state.params)
  if not fold_params:
    raise FileNotFoundError(f"{workdir / 'folds'} holds no finished fold group: train first")
  return model, class_names, fold_params


def read_clip(folder: str, *, onset: Optional[int], apex: Optional[int], offset: Optional[int],
              num_frames: int, image_size: int) -> tuple[np.ndarray, int, list[int]]:
  """Samples T frames of the clip in `folder`: (uint8 `[T, H, W, 3]`, apex position, numbers)."""
  if not Path(folder).is_dir():
    raise DatasetError(f"clip folder {folder!r} does not exist (expected a folder of numbered "
                       "jpg/bmp/png frames)")
  available = frames_lib.list_frames(folder)
  if not available:
    raise DatasetError(f"clip folder {folder!r} holds no numbered jpg/bmp/png frame")
  first, last = available[0][0], available[-1][0]
  onset = first if onset is None else onset
  offset = last if offset is None else offset
  numbers = [n for n, _ in available if onset <= n <= offset]
  paths = [p for n, p in available if onset <= n <= offset]
  if not numbers:
    raise DatasetError(f"{folder}: no frame numbered between onset {onset} and offset {offset} "
                       f"(frames run from {first} to {last})")
  if apex is None:
    decoded = np.stack([frames_lib.decode_frame(p, image_size, folder) for p in paths])
    diff = np.abs(decoded.astype(np.float32) - decoded[:1]).mean(axis=(1, 2, 3))
    apex_pos = int(np.argmax(diff))
  else:
    if not onset <= apex <= offset:
      raise DatasetError(f"{folder}: apex {apex} outside [onset {onset}, offset {offset}]")
    apex_pos = int(np.argmin([abs(n - apex) for n in numbers]))
  positions, apex_index = frames_lib.sample_frame_indices(len(paths), apex_pos, num_frames)
  clip = np.stack([frames_lib.decode_frame(paths[p], image_size, folder) for p in positions])
  return clip, apex_index, [numbers[p] for p in positions]


def predict(workdir: Path, folder: str, *, onset=None, apex=None, offset=None,
            fold: Optional[str] = None, out_png: Optional[Path] = None) -> dict:
  """Probabilities of every class for the clip; writes its intensity curve as a PNG."""
  workdir = Path(workdir)
  config = load_config(workdir)
  model, class_names, fold_params = load_fold_params(workdir, config)
  if fold is not None:
    if fold not in fold_params:
      raise train.RunError(f"--fold={fold!r} is not a fold of {workdir}; folds: {sorted(fold_params)}")
    fold_params = {fold: fold_params[fold]}
  clip, apex_index, numbers = read_clip(folder, onset=onset, apex=apex, offset=offset,
                                        num_frames=config.data.num_frames,
                                        image_size=config.data.image_size)
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
  probs, curves = [], []
  for params in fold_params.values():
    out = apply(params, clip[None])
    probs.append(np.asarray(jax.nn.softmax(out.logits[0])))
    curves.append(np.asarray(out.intensities[0]))
  mean_probs = np.mean(probs, axis=0)
  prototype = np.asarray(losses.intensity_prototype(
      len(numbers), apex_index, epsilon=config.loss.prototype_epsilon,
      sigma_floor=config.loss.prototype_sigma_floor)[0])
  out_png = Path(out_png) if out_png else workdir / f"predict_{Path(folder).name}_intensity.png"
  reports.plot_intensity_curves(out_png, np.stack(curves), prototype,
                                title=f"{Path(folder).name}: frames {numbers}")
  return {"probabilities": dict(zip(class_names, mean_probs.tolist())),
          "predicted": class_names[int(np.argmax(mean_probs))], "folds": list(fold_params),
          "frames": numbers, "apex_position": apex_index,
          "intensities": np.mean(curves, axis=0).tolist(), "intensity_png": str(out_png)}
