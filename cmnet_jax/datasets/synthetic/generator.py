"""Plans and renders synthetic micro-expression clips and writes them as a CASME II tree.

Randomness is split into independent streams, each seeded by `(seed, stream, subject, slot)`:
identities, the class of each slot, nuisances (clip length, apex position, time-course shape,
onset frame number, head jitter, illumination drift, blinks, sensor noise), file names, the
expression (AU variant and strengths) and, with `neutral_margin > 0`, the neutral frames around
the expression (the clip's temporal window: the apex then falls anywhere in the clip, not at a
near-fixed share of it). Only the expression stream and the class order depend on
the label, so with `amplitude_px = 0` every pixel, file name and frame number is independent of
the class: the amplitude-0 control carries no label information.
"""
import csv
import dataclasses
import os
from typing import Any, Mapping

import numpy as np
from PIL import Image

from cmnet_jax import config_blocks as cb
from cmnet_jax.datasets import writers
from cmnet_jax.datasets.synthetic import expressions, faces

CODING_FILE = "CASME2-coding-20190701.xlsx"
INTENSITY_FILE = "true_intensity.csv"
_IDENTITY, _CLASSES, _NUISANCE, _EXPRESSION, _NAMES, _SLASH, _WINDOW = range(7)

# Every key of the `synthetic` config block, declared once (configs/common.py synthetic_config
# builds the block from these defaults).
SETTINGS = cb.Spec({
    "seed": cb.Field(cb.INT, cb.non_negative, default=0),
    "num_subjects": cb.Field(cb.INT, cb.in_range(1, 99), default=8),
    "clips_per_class": cb.Field(cb.INT, cb.at_least(1), "per subject and class: identity "
                                "carries no label information", default=4),
    "image_size": cb.Field(cb.INT, cb.at_least(8), "rendered (and written) size in pixels",
                           default=64),
    "min_frames": cb.Field(cb.INT, cb.at_least(3), "clip length onset..offset, drawn per clip",
                           default=20),
    "max_frames": cb.Field(cb.INT, cb.at_least(3), default=40),
    "amplitude_px": cb.Field(cb.FLOAT, cb.non_negative, "displacement at the apex, pixels",
                             default=1.0),
    "head_jitter_px": cb.Field(cb.FLOAT, cb.non_negative, "pixels; registered-crop level by "
                               "default, ~0.3+ for raw video", default=0.1),
    "illumination_drift": cb.Field(cb.FLOAT, cb.in_range(0, 1, hi_open=True),
                                   "+- relative brightness drift over a clip", default=0.03),
    "noise_sigma": cb.Field(cb.FLOAT, cb.non_negative, "sensor noise, fraction of full scale",
                            default=2.0 / 255.0),
    "blink_probability": cb.Field(cb.FLOAT, cb.in_range(0, 1), default=0.2),
    "jpeg_quality": cb.Field(cb.INT, cb.in_range(1, 100), default=95),
    "neutral_margin": cb.Field(cb.FLOAT, cb.in_range(0, 4),
                               "expression lengths of neutral frames around the expression, "
                               "split at random per clip (> 0 moves the apex in the clip); "
                               "0 = none", default=0.0),
}, rules=(cb.Rule(("max_frames", "min_frames"), lambda hi, lo: hi >= lo,
                  "max_frames >= min_frames"),))


def validate_settings(config: Mapping[str, Any]) -> dict[str, Any]:
  """The generator's settings from a `synthetic` config block, typed and checked.

  Raises:
    config_blocks.ConfigError (a ValueError; also a KeyError if a key is missing) naming every
    bad `synthetic.<key>` and what was expected.

  >>> s = dict(seed=0, num_subjects=2, clips_per_class=1, image_size=32, min_frames=6,
  ...          max_frames=9, amplitude_px=1, head_jitter_px=0.1, illumination_drift=0.03,
  ...          noise_sigma=0.01, blink_probability=0.2, jpeg_quality=95, neutral_margin=0)
  >>> validate_settings(s)['amplitude_px']
  1.0
  """
  return cb.read_block(config, SETTINGS, "synthetic")


@dataclasses.dataclass(frozen=True)
class ClipPlan:
  """Everything needed to render one clip; arrays are per frame, `[time]` or `[time, 2]`."""
  subject: str                 # as in the coding sheet, e.g. '01'
  filename: str                # e.g. 'EP07_03f'
  slot: int                    # position among the subject's clips (independent of the class)
  expression: expressions.Expression
  onset: int                   # absolute frame number of the first (onset) frame
  apex_index: int              # position of the true apex in the clip
  intensity: np.ndarray        # true expression intensity in [0, 1], 1 at the apex
  jitter_px: np.ndarray        # head translation (dx, dy) per frame, pixels
  brightness: np.ndarray       # illumination gain per frame
  blink: np.ndarray            # eyelid closure per frame, 0 = open
  noise_seed: int
  apex_unknown: bool = False   # the coding sheet writes this clip's apex as '/'

  @property
  def frame_numbers(self) -> np.ndarray:
    return self.onset + np.arange(len(self.intensity))


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, *stream])


def class_order(seed: int, subject: int, clips_per_class: int) -> list[str]:
  """The emotion of each of a subject's slots: every class `clips_per_class` times, shuffled."""
  order = np.repeat(np.arange(len(expressions.CLASS_NAMES)), clips_per_class)
  return [expressions.CLASS_NAMES[i] for i in _rng(seed, _CLASSES, subject).permutation(order)]


def _file_names(seed: int, subject: int, count: int) -> list[str]:
  """CASME II-like clip names 'EP<episode>_<k>' (sometimes with an 'f' suffix), unique."""
  rng = _rng(seed, _NAMES, subject)
  episodes = rng.integers(1, 20, count)
  names, seen = [], {}
  for ep in episodes:
    seen[ep] = seen.get(ep, 0) + 1
    names.append(f"EP{ep:02d}_{seen[ep]:02d}" + ("f" if rng.uniform() < 0.2 else ""))
  return names


def plan_clips(settings: Mapping[str, Any]) -> list[ClipPlan]:
  """All clips of the set, sorted by (subject, filename); see the module docstring for streams."""
  seed, n_sub, cpc = settings["seed"], settings["num_subjects"], settings["clips_per_class"]
  per_subject = cpc * len(expressions.CLASS_NAMES)
  slash = _rng(seed, _SLASH).integers(n_sub * per_subject)
  plans = []
  for s in range(1, n_sub + 1):
    names = _file_names(seed, s, per_subject)
    for slot, emotion in enumerate(class_order(seed, s, cpc)):
      rng = _rng(seed, _NUISANCE, s, slot)
      unknown = bool(slash == (s - 1) * per_subject + slot)
      intensity, apex = expressions.sample_time_course(
          rng, settings["min_frames"], settings["max_frames"], middle_apex=unknown)
      if settings.get("neutral_margin", 0.0) > 0:
        intensity, apex = _neutral_window(_rng(seed, _WINDOW, s, slot), intensity, apex,
                                          settings["neutral_margin"], symmetric=unknown)
      length = len(intensity)
      onset = int(rng.integers(2, 150))
      jitter = rng.normal(0.0, 1.0, (length, 2)) * settings["head_jitter_px"]
      ramp = np.arange(length) / (length - 1)
      brightness = 1.0 + settings["illumination_drift"] * rng.uniform(-1.0, 1.0) * ramp
      blink = np.zeros(length)
      if rng.uniform() < settings["blink_probability"]:
        centre = rng.uniform(0, length - 1)
        width, depth = rng.uniform(1.5, 5.0), rng.uniform(0.6, 1.0)
        blink = depth * np.exp(-0.5 * ((np.arange(length) - centre) / width) ** 2)
      noise_seed = int(rng.integers(2 ** 31))
      expression = expressions.sample_expression(_rng(seed, _EXPRESSION, s, slot), emotion)
      plans.append(ClipPlan(f"{s:02d}", names[slot], slot, expression, onset, apex, intensity,
                            jitter, brightness, blink, noise_seed, unknown))
  return sorted(plans, key=lambda p: (p.subject, p.filename))


def _neutral_window(rng: np.random.Generator, intensity: np.ndarray, apex: int,
                    margin: float, *, symmetric: bool = False) -> tuple[np.ndarray, int]:
  """The expression inside a clip `1 + margin` times its length: the round(margin x length)
  neutral frames are split at a uniform random point into a lead (intensity 0) and a trail (the
  offset residual held), so the apex falls anywhere from early to late in the clip. `symmetric`
  (the clip whose apex the sheet leaves out, which the reader places mid-clip) splits in half."""
  extra = int(round(margin * len(intensity)))
  lead = extra // 2 if symmetric else int(rng.integers(0, extra + 1))
  curve = np.concatenate([np.zeros(lead), intensity, np.full(extra - lead, intensity[-1])])
  return curve, apex + lead


def identity_of(settings: Mapping[str, Any], subject: str) -> faces.Identity:
  """The face of subject '01', '02', ... (one per subject, from the identity stream)."""
  return faces.make_identity(_rng(settings["seed"], _IDENTITY, int(subject)))


def render_clip(identity: faces.Identity, plan: ClipPlan, settings: Mapping[str, Any],
                frames: np.ndarray | None = None) -> np.ndarray:
  """Renders a clip (or the positions `frames` of it): uint8 `[time, size, size, 3]`.

  Pixel p of frame t shows the face at p - s_t D(p) - j_t (D the apex AU field in pixels, s_t
  the true intensity, j_t head jitter), times the illumination gain, plus Gaussian sensor noise,
  rounded to 8 bits. Vectorised over frames and pixels.
  """
  size = settings["image_size"]
  idx = np.arange(len(plan.intensity)) if frames is None else np.asarray(frames)
  field = expressions.displacement_field(identity, plan.expression.weights, image_size=size,
                                         amplitude_px=settings["amplitude_px"])
  g = np.arange(size, dtype=np.float32) + 0.5
  s = plan.intensity[idx, None, None].astype(np.float32)
  jit = plan.jitter_px[idx].astype(np.float32)
  x = (g[None, None, :] - s * field[None, ..., 0] - jit[:, 0, None, None]) / size
  y = (g[None, :, None] - s * field[None, ..., 1] - jit[:, 1, None, None]) / size
  img = faces.render_face(identity, x, y, image_size=size, blink=plan.blink[idx, None, None])
  img = img * plan.brightness[idx, None, None, None].astype(np.float32)
  noise = np.random.default_rng(plan.noise_seed).standard_normal(
      (len(plan.intensity),) + img.shape[1:], dtype=np.float32)
  img += np.float32(settings["noise_sigma"]) * noise[idx]
  return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def write_tree(settings: Mapping[str, Any], root: str) -> dict[str, int]:
  """Writes `Cropped/subNN/<filename>/reg_img<N>.jpg`, the coding xlsx and the true intensities.

  Returns counts {'clips': ..., 'frames': ...}.
  """
  plans = plan_clips(settings)
  rows, n_frames, identity = [], 0, None
  with open(os.path.join(root, INTENSITY_FILE), "w", newline="") as f:
    table = csv.writer(f, lineterminator="\n")
    table.writerow(("subject", "filename", "frame", "intensity"))
    for plan in plans:
      if identity is None or identity[0] != plan.subject:
        identity = (plan.subject, identity_of(settings, plan.subject))
      folder = os.path.join(root, "Cropped", f"sub{plan.subject}", plan.filename)
      os.makedirs(folder)
      for number, frame, level in zip(plan.frame_numbers, render_clip(identity[1], plan, settings),
                                      plan.intensity):
        Image.fromarray(frame).save(os.path.join(folder, f"reg_img{number}.jpg"),
                                    quality=settings["jpeg_quality"], subsampling=0)
        table.writerow((plan.subject, plan.filename, int(number), f"{level:.6f}"))
        n_frames += 1
      numbers = plan.frame_numbers
      rows.append(dict(subject=plan.subject, filename=plan.filename, onset=int(numbers[0]),
                       apex="/" if plan.apex_unknown else int(numbers[plan.apex_index]),
                       offset=int(numbers[-1]), action_units=plan.expression.action_units,
                       emotion=plan.expression.emotion,
                       objective_class=expressions.objective_class(plan.expression)))
  writers.write_casme2_coding(os.path.join(root, CODING_FILE), rows, objective_class=True)
  return {"clips": len(plans), "frames": n_frames}


def load_true_intensity(root: str | os.PathLike) -> dict[tuple[str, str], dict[int, float]]:
  """The true per-frame intensity of a generated tree: {(subject, filename): {frame: s}}.

  `subject` is as in the coding sheet ('01'); frame numbers are the absolute `reg_img<N>` numbers.
  """
  path = os.path.join(os.fspath(root), INTENSITY_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no true-intensity file {path!r} (expected the {INTENSITY_FILE} "
                            f"written by cmnet_jax.datasets.synthetic.generate)")
  out: dict[tuple[str, str], dict[int, float]] = {}
  with open(path, newline="") as f:
    rows = csv.reader(f)
    header = next(rows, None)
    if header != ["subject", "filename", "frame", "intensity"]:
      raise ValueError(f"{path}: header {header} is not ['subject', 'filename', 'frame', "
                       f"'intensity']")
    for line, row in enumerate(rows, start=2):
      try:
        subject, filename, frame, level = row
        out.setdefault((subject, filename), {})[int(frame)] = float(level)
      except ValueError:
        raise ValueError(f"{path}, row {line}: {row} is not subject,filename,frame(int),"
                         f"intensity(float)") from None
  return out
