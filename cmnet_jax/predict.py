"""Class probabilities for a user's own clip from a trained workdir, which is only read.

The fold models are the workdir's final checkpoints (epoch `train.num_epochs`), and those only:
a missing or damaged one is an error naming it and saying how to make it again, never a silent
fall back to an older model. The prediction is the mean of the folds' softmax probabilities (or
one named fold's). The clip is a folder of numbered frames, at least `MIN_FRAMES` of them
between onset and offset; give onset/apex/offset frame numbers, or leave the apex out and it is
spotted from the learned intensity (`spot`: the fold models' intensity of every frame, highest
wins; the frame that differs most from the first one is reported beside it). The clip's
intensity curve is drawn by `write_curve` wherever the caller says (never into the workdir).
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


# The spotted onset / offset: the nearest frames on either side of the apex whose intensity has
# fallen to SPOT_THRESHOLD of the way from the clip's lowest intensity to the apex's.
SPOT_THRESHOLD = 0.2
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def clip_frame_paths(folder: str, *, onset: Optional[int], offset: Optional[int]
                     ) -> tuple[list, list, list]:
  """(frame numbers, paths, notes) of the frames onset..offset of the clip folder.

  Frames of another size than the clip's other frames are left out with a note, as in training
  (`frames.same_size`). Raises DatasetError for a path that is not a folder (a video file says
  so) or a folder with fewer than `MIN_FRAMES` frames in onset..offset.
  """
  path = Path(folder)
  if path.is_file():
    kind = ("a video file" if path.suffix.lower() in VIDEO_SUFFIXES else "a file")
    raise DatasetError(f"--frames={folder!r} is {kind}; expected a folder of numbered jpg/bmp/png "
                       "frames (one image per frame, e.g. extracted with "
                       "`ffmpeg -i clip.mp4 folder/img%d.jpg`)")
  if not path.is_dir():
    raise DatasetError(f"clip folder {folder!r} does not exist (expected a folder of numbered "
                       "jpg/bmp/png frames)")
  available = frames_lib.list_frames(folder)
  if not available:
    raise DatasetError(f"clip folder {folder!r} holds no numbered jpg/bmp/png frame")
  first, last = available[0][0], available[-1][0]
  onset = first if onset is None else onset
  offset = last if offset is None else offset
  kept = [(n, p) for n, p in available if onset <= n <= offset]
  notes = []
  if kept:
    kept, note = frames_lib.same_size(kept, folder)
    notes += [f"note: {note}"] if note else []
  if len(kept) < MIN_FRAMES:
    raise DatasetError(
        f"{folder}: {len(kept)} frame(s){' of one size' if notes else ''} between onset {onset} "
        f"and offset {offset} (frames run from {first} to {last}); a clip needs at least "
        f"{MIN_FRAMES} (onset, apex and offset) to show a motion")
  return [n for n, _ in kept], [p for _, p in kept], notes


def read_clip(folder: str, *, onset: Optional[int], apex: Optional[int], offset: Optional[int],
              num_frames: int, image_size: int, sampling: str = "anchored",
              decoded: Optional[np.ndarray] = None, listed: Optional[tuple] = None) -> Clip:
  """Samples T frames of the clip in `folder` (see `Clip`).

  Without `apex`, the apex is the frame that differs most from the first one (the difference
  baseline; `predict` passes the apex it spotted from the learned intensity instead).
  `listed`: `clip_frame_paths(folder, onset=onset, offset=offset)` already called, and
  `decoded`: its frames already decoded (`[n, H, W, 3]`), so neither is done twice.
  Raises DatasetError if the folder has fewer than `MIN_FRAMES` frames in onset..offset.
  """
  numbers, paths, _ = listed or clip_frame_paths(folder, onset=onset, offset=offset)
  if decoded is None:
    decoded = np.stack([frames_lib.decode_frame(p, image_size, folder) for p in paths])
  if apex is None:
    apex_pos = int(np.argmax(reports.motion_energy(decoded[None])[0]))
  else:
    if not numbers[0] <= apex <= numbers[-1]:
      raise DatasetError(f"{folder}: apex {apex} outside [onset {numbers[0]}, offset "
                         f"{numbers[-1]}]")
    apex_pos = int(np.argmin([abs(n - apex) for n in numbers]))
  positions, apex_index = frames_lib.sample_frame_indices(len(paths), apex_pos, num_frames,
                                                          mode=sampling)
  return Clip(decoded[positions], int(apex_index), [numbers[p] for p in positions], len(paths))


def frame_intensities(model, fold_params: dict, frames: np.ndarray) -> np.ndarray:
  """The learned intensity s of every frame `[n, H, W, 3]` (uint8), relative to the first (onset)
  frame: `[folds, n]`. Each frame is encoded on its own (the ICE sees one frame and, in the
  onset-difference input, the onset frame), so s of a frame does not depend on which other
  frames are sampled."""
  apply = jax.jit(lambda p, x, ref: model.apply({"params": p}, x, reference=ref,
                                                method="intensity_branch")[0])
  x, ref = frames[None], frames[None, :1]
  return np.stack([np.asarray(apply(p, x, ref))[0] for p in fold_params.values()])


def spot_apex(s: np.ndarray, motion: np.ndarray, numbers: list, *, skip_onset: bool) -> dict:
  """Onset, apex and offset of a clip from its per-frame learned intensity `s` `[n]`.

  apex: the frame of highest s (the first frame excluded when `skip_onset`: its onset-difference
  input is zero, so s there says nothing); onset / offset: the nearest frame before / after the
  apex whose s has fallen to `SPOT_THRESHOLD` of the way from the clip's lowest s to the apex's
  (the clip's first / last frame if none). Also the difference baseline's apex (the frame that
  differs most from the first one) and a sentence saying why each frame was chosen.

  >>> r = spot_apex(np.array([0.1, 0.1, 0.5, 0.9, 0.4, 0.1]), np.array([0, 1, 2, 3, 9, 1.]),
  ...               [10, 11, 12, 13, 14, 15], skip_onset=True)
  >>> r['onset'], r['apex'], r['offset'], r['difference_apex']
  (11, 13, 15, 14)
  """
  s, motion = np.asarray(s, np.float64), np.asarray(motion, np.float64)
  first = 1 if skip_onset and len(s) > 2 else 0
  apex = first + int(np.argmax(s[first:]))
  low = float(np.min(s[first:]))
  level = low + SPOT_THRESHOLD * (s[apex] - low)
  below = np.flatnonzero(s <= level)
  before, after = below[(below < apex) & (below >= first)], below[below > apex]
  onset = int(before[-1]) if len(before) else 0
  offset = int(after[0]) if len(after) else len(s) - 1
  diff_apex = first + int(np.argmax(motion[first:]))
  why = (f"apex = frame {numbers[apex]}: the highest learned intensity (s = {s[apex]:.3f}; the "
         f"clip's lowest {low:.3f}) of the {len(s) - first} frames "
         f"{numbers[first]}..{numbers[-1]}"
         f"{' (the first frame is the onset reference)' if first else ''}; onset / offset = "
         f"frames {numbers[onset]} / {numbers[offset]}: nearest on either side with s <= "
         f"{level:.3f} ({SPOT_THRESHOLD:g} of the way up); the frame that differs most from the "
         f"first is {numbers[diff_apex]}")
  return {"onset": numbers[onset], "apex": numbers[apex], "offset": numbers[offset],
          "difference_apex": numbers[diff_apex], "reason": why}


def spot(workdir: str | Path, folder: str, *, config=None, onset=None, offset=None,
         fold: Optional[str] = None, loaded=None, listed: Optional[tuple] = None) -> dict:
  """Per-frame learned intensity of the clip in `folder` and the onset / apex / offset spotted
  from it (`spot_apex`), from the workdir's final fold models (mean over them, or one `fold`).

  `loaded`: `(model, class_names, fold_params)` already loaded and `listed`: the clip's
  `clip_frame_paths` already read (`predict` passes its own).
  Returns {'frames', 'intensity' (per frame, mean over folds), 'motion' (mean absolute
  difference from the first frame), 'onset', 'apex', 'offset', 'difference_apex', 'reason',
  'notes', 'decoded'}.
  """
  config = config if config is not None else load_config(workdir)
  model, _, fold_params = loaded if loaded is not None else load_fold_params(workdir, config)
  fold_params = _one_fold(fold_params, fold, workdir)
  numbers, paths, notes = listed or clip_frame_paths(folder, onset=onset, offset=offset)
  decoded = np.stack([frames_lib.decode_frame(p, config.data.image_size, folder) for p in paths])
  s = frame_intensities(model, fold_params, decoded).mean(0)
  motion = reports.motion_energy(decoded[None])[0]
  spotted = spot_apex(s, motion, numbers,
                      skip_onset=config.model.input_mode == "onset_difference")
  return {"frames": numbers, "intensity": s.tolist(), "motion": motion.tolist(),
          "notes": notes, "decoded": decoded, **spotted}


def _one_fold(fold_params: dict, fold: Optional[str], workdir) -> dict:
  if fold is None:
    return fold_params
  if fold not in fold_params:
    raise RunError(f"--fold={fold!r} is not a fold of {workdir}; folds: {sorted(fold_params)}")
  return {fold: fold_params[fold]}


def predict(workdir: str | Path, folder: str, *, config=None, onset=None, apex=None, offset=None,
            fold: Optional[str] = None, out_png: Optional[str | Path] = None) -> dict:
  """Probabilities of every class for the clip, from the workdir's final fold models.

  `config` defaults to the workdir's own. Nothing is written unless `out_png` names where to
  draw the intensity curve (or call `write_curve` with the result). The result's `notes` say
  what a user should know (e.g. frames repeated because the clip is shorter than T).
  """
  config = config if config is not None else load_config(workdir)
  model, class_names, fold_params = load_fold_params(workdir, config)
  fold_params = _one_fold(fold_params, fold, workdir)
  t = config.data.num_frames
  listed = clip_frame_paths(folder, onset=onset, offset=offset)
  notes = list(listed[2])
  spotted, decoded = None, None
  if apex is None:
    spotted = spot(workdir, folder, config=config, onset=onset, offset=offset,
                   loaded=(model, class_names, fold_params), listed=listed)
    decoded, apex = spotted.pop("decoded"), spotted["apex"]
  clip, apex_index, numbers, available = read_clip(
      folder, onset=onset, apex=apex, offset=offset, num_frames=t,
      image_size=config.data.image_size, sampling=config.data.get("frame_sampling", "anchored"),
      decoded=decoded, listed=listed)
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
            "prototype": prototype, "clip_name": Path(folder).name, "notes": notes,
            "spotted": spotted}
  if out_png is not None:
    result["intensity_png"] = str(write_curve(result, out_png))
  return result


def write_curve(result: dict, path: str | Path) -> Path:
  """Draws a `predict` result's intensity curves (each fold's, and the prototype) to `path`."""
  return reports.plot_intensity_curves(path, result["curves"], result["prototype"],
                                       title=f"{result['clip_name']}: frames {result['frames']}")
