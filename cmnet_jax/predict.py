"""Class probabilities for a user's own clip from a trained workdir, which is only read.

The fold models are the workdir's final checkpoints (epoch `train.num_epochs`), and those only:
a missing or damaged one is an error naming it and saying how to make it again, never a silent
fall back to an older model. The prediction is the mean of the folds' softmax probabilities (or
one named fold's). The clip is a folder of numbered frames, at least `MIN_FRAMES` of them
between onset and offset; give onset/apex/offset frame numbers, or take the whole folder with
the apex guessed as the frame that differs most from the first one. The clip's intensity curve
is drawn by `write_curve` wherever the caller says (never into the workdir).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import jax
import numpy as np

from cmnet_jax import checkpoint
from cmnet_jax import losses
from cmnet_jax import reports
from cmnet_jax import train_step as ts
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.datasets import DatasetError
from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.errors import RunError, WorkdirError

MIN_FRAMES = 3  # onset, apex and offset


class Clip(NamedTuple):
  """A clip read for prediction: uint8 `[T, H, W, 3]` frames, the apex's position in them, the
  sampled frame numbers, and how many frames onset..offset the folder has."""
  frames: np.ndarray
  apex_index: int
  numbers: list
  available: int


def load_config(workdir: str | Path):
  """The config the workdir was trained with (its config.json)."""
  return workdir_lib.Workdir(workdir).load_config()


def load_fold_params(workdir: str | Path, config):
  """(model, class_names, {test_subject: params}) from the final checkpoint of every fold."""
  wd = workdir_lib.Workdir(workdir)
  meta = wd.read_folds()
  class_names, subjects = meta["class_names"], meta["test_subjects"]
  setup = ts.make_setup(config, len(class_names))
  final = int(config.train.num_epochs)
  groups = wd.group_files()
  if not groups:
    raise WorkdirError(f"{wd.path} holds no finished fold group yet (training has not "
                       f"finished): run python run.py --workdir={wd.path} to finish it")
  fold_params = {}
  for g in groups:
    fold_ids = wd.load_group(g.path)["fold_ids"]
    try:
      state, _ = checkpoint.restore_step(wd.checkpoint_dir(g.group, g.process), final,
                                         ts.state_template(setup, len(fold_ids)))
    except checkpoint.CheckpointError as e:
      raise checkpoint.CheckpointError(
          f"{e}. {wd.final_checkpoint_advice(g.group, g.process, final)}") from None
    for slot, fid in enumerate(fold_ids):
      if fid >= 0:
        fold_params[subjects[fid]] = jax.tree.map(lambda x, s=slot: x[s], state.params)
  return setup.model, class_names, fold_params


def read_clip(folder: str, *, onset: Optional[int], apex: Optional[int], offset: Optional[int],
              num_frames: int, image_size: int, sampling: str = "anchored") -> Clip:
  """Samples T frames of the clip in `folder` (see `Clip`).

  Raises DatasetError if the folder has fewer than `MIN_FRAMES` frames in onset..offset.
  """
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
  if len(numbers) < MIN_FRAMES:
    raise DatasetError(
        f"{folder}: {len(numbers)} frame(s) between onset {onset} and offset {offset} (frames "
        f"run from {first} to {last}); a clip needs at least {MIN_FRAMES} (onset, apex and "
        "offset) to show a motion")
  if apex is None:
    decoded = np.stack([frames_lib.decode_frame(p, image_size, folder) for p in paths])
    diff = np.abs(decoded.astype(np.float32) - decoded[:1]).mean(axis=(1, 2, 3))
    apex_pos = int(np.argmax(diff))
  else:
    if not onset <= apex <= offset:
      raise DatasetError(f"{folder}: apex {apex} outside [onset {onset}, offset {offset}]")
    apex_pos = int(np.argmin([abs(n - apex) for n in numbers]))
  positions, apex_index = frames_lib.sample_frame_indices(len(paths), apex_pos, num_frames,
                                                          mode=sampling)
  clip = np.stack([frames_lib.decode_frame(paths[p], image_size, folder) for p in positions])
  return Clip(clip, int(apex_index), [numbers[p] for p in positions], len(paths))


def predict(workdir: str | Path, folder: str, *, config=None, onset=None, apex=None, offset=None,
            fold: Optional[str] = None, out_png: Optional[str | Path] = None) -> dict:
  """Probabilities of every class for the clip, from the workdir's final fold models.

  `config` defaults to the workdir's own. Nothing is written unless `out_png` names where to
  draw the intensity curve (or call `write_curve` with the result). The result's `notes` say
  what a user should know (e.g. frames repeated because the clip is shorter than T).
  """
  config = config if config is not None else load_config(workdir)
  model, class_names, fold_params = load_fold_params(workdir, config)
  if fold is not None:
    if fold not in fold_params:
      raise RunError(f"--fold={fold!r} is not a fold of {workdir}; folds: {sorted(fold_params)}")
    fold_params = {fold: fold_params[fold]}
  t = config.data.num_frames
  clip, apex_index, numbers, available = read_clip(
      folder, onset=onset, apex=apex, offset=offset, num_frames=t,
      image_size=config.data.image_size, sampling=config.data.get("frame_sampling", "anchored"))
  notes = []
  if available < t:
    notes.append(f"note: the clip has {available} frames in onset..offset, fewer than the {t} "
                 f"the model samples: frames are repeated ({numbers})")
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
  result = {"probabilities": dict(zip(class_names, mean_probs.tolist())),
            "predicted": class_names[int(np.argmax(mean_probs))], "folds": list(fold_params),
            "frames": numbers, "apex_position": apex_index,
            "intensities": np.mean(curves, axis=0).tolist(), "curves": np.stack(curves),
            "prototype": prototype, "clip_name": Path(folder).name, "notes": notes}
  if out_png is not None:
    result["intensity_png"] = str(write_curve(result, out_png))
  return result


def write_curve(result: dict, path: str | Path) -> Path:
  """Draws a `predict` result's intensity curves (each fold's, and the prototype) to `path`."""
  return reports.plot_intensity_curves(path, result["curves"], result["prototype"],
                                       title=f"{result['clip_name']}: frames {result['frames']}")
