"""Micro-expressions: Action-Unit displacement fields and onset -> apex -> offset time courses.

An Action Unit (AU) moves the skin near a few facial landmarks. Each movement is a smooth
Gaussian bump of displacement, `v * exp(-|p - c|^2 / (2 r^2))` around landmark c with direction v
and radius r; a clip's field at the apex is the weighted sum over its AUs, scaled so that its
largest displacement is exactly the configured amplitude (pixels). Frame t shows the field times
the intensity `s_t` in [0, 1] (1 at the apex). Five classes follow CASME II's AU patterns.
"""
import dataclasses
import re
from typing import Mapping

import numpy as np

from cmnet_jax.datasets.synthetic.faces import Identity

CLASS_NAMES = ("happiness", "disgust", "repression", "surprise", "others")

# AU -> movements (landmark stem, direction (dx, dy) on the image-right side, radius).
# The image-left side mirrors dx; y grows downwards, so dy < 0 is "up". A stem with landmarks
# `<stem>_l` and `<stem>_r` moves on both sides; other stems ('chin', 'lower_lip') are midline.
AU_MOVES = {
    1: (("brow_inner", (0.0, -1.0), 0.045),),
    2: (("brow_outer", (0.0, -1.0), 0.045),),
    4: (("brow_inner", (-0.5, 0.85), 0.05),),
    6: (("cheek", (0.0, -1.0), 0.06), ("eye_lower", (0.0, -0.5), 0.03)),
    7: (("eye_lower", (0.0, -1.0), 0.03),),
    9: (("nose_side", (0.0, -1.0), 0.035), ("brow_inner", (-0.2, 0.4), 0.035)),
    10: (("upper_lip", (0.0, -1.0), 0.035),),
    12: (("lip_corner", (0.6, -0.8), 0.04),),
    14: (("lip_corner", (-1.0, 0.0), 0.035),),
    15: (("lip_corner", (0.0, 1.0), 0.04),),
    17: (("chin", (0.0, -1.0), 0.055), ("lower_lip", (0.0, -0.6), 0.035)),
}
_MIDLINE_AUS = (17,)

# AU combinations per class, as coded in CASME II (drawn uniformly per clip).
CLASS_VARIANTS = {
    "happiness": ("6+12", "6+12", "12"),
    "disgust": ("4+9", "4+10", "4+9+10", "9", "10"),
    "repression": ("14", "15", "17", "14+17", "15+17"),
    "surprise": ("1+2",),
    "others": ("4", "7", "4+7"),
}
UNILATERAL_PROBABILITY = 0.15


@dataclasses.dataclass(frozen=True)
class Expression:
  """One clip's expression: CASME II-style AU code and per-AU (left, right) weights."""
  emotion: str
  action_units: str                            # e.g. '6+12', 'R12', '4+L10'
  weights: Mapping[int, tuple[float, float]]   # AU -> (image-left weight, image-right weight)


def parse_action_units(code: str) -> dict[int, str]:
  """'4+L10' -> {4: '', 10: 'L'}: each AU number with its side prefix ('' = both sides).

  >>> parse_action_units('6+R12')
  {6: '', 12: 'R'}
  """
  out = {}
  for part in str(code).split("+"):
    match = re.fullmatch(r"\s*([LR]?)(\d+)\s*", part)
    if not match:
      raise ValueError(f"action unit code {code!r}: cannot parse {part!r} "
                       f"(expected e.g. '4', 'L10')")
    out[int(match.group(2))] = match.group(1)
  return out


def sample_expression(rng: np.random.Generator, emotion: str) -> Expression:
  """Draws an AU combination of `emotion`'s class, per-AU strengths in [0.6, 1], maybe one-sided.

  >>> e = sample_expression(np.random.default_rng(0), 'surprise')
  >>> sorted(parse_action_units(e.action_units))
  [1, 2]
  """
  if emotion not in CLASS_VARIANTS:
    raise ValueError(f"unknown emotion {emotion!r}: expected one of {CLASS_NAMES}")
  variants = CLASS_VARIANTS[emotion]
  aus = [int(a) for a in variants[rng.integers(len(variants))].split("+")]
  strengths = rng.uniform(0.6, 1.0, len(aus))
  side = ""
  if rng.uniform() < UNILATERAL_PROBABILITY and not set(aus) & set(_MIDLINE_AUS):
    side = "LR"[rng.integers(2)]
  weights = {au: (float(w) * (side != "R"), float(w) * (side != "L"))
             for au, w in zip(aus, strengths)}
  code = "+".join(f"{side}{au}" for au in aus)
  return Expression(emotion, code, weights)


def objective_class(expression: Expression) -> int:
  """CASME II 'Objective Classes' (1 happiness, 2 surprise, 3 anger, 4 contempt, 5 disgust,
  7 others/sadness) from the AUs, as the 20190701 sheet codes them."""
  aus = set(expression.weights)
  if aus & {6, 12}:
    return 1
  if aus & {1, 2}:
    return 2
  if aus & {9, 10}:
    return 5
  if 14 in aus:
    return 4
  if 4 in aus:
    return 3
  return 7


def displacement_field(identity: Identity, weights: Mapping[int, tuple[float, float]], *,
                       image_size: int, amplitude_px: float) -> np.ndarray:
  """The apex displacement field in pixels, float32 `[height, width, 2]` as (dx, dy).

  D(p) = sum over AUs a, movements m, sides s of  w_{a,s} v_{m,s} exp(-|p - c_{m,s}|^2 / (2 r_m^2)),
  evaluated at pixel centres in normalised units, then scaled so max_p |D(p)| = amplitude_px
  (all zeros if amplitude_px == 0 or there is no AU).

  >>> from cmnet_jax.datasets.synthetic.faces import make_identity
  >>> d = displacement_field(make_identity(np.random.default_rng(0)), {12: (1.0, 1.0)},
  ...                        image_size=32, amplitude_px=1.5)
  >>> d.shape, round(float(np.linalg.norm(d, axis=-1).max()), 6)
  ((32, 32, 2), 1.5)
  """
  g = (np.arange(image_size, dtype=np.float64) + 0.5) / image_size
  x, y = g[None, :], g[:, None]
  field = np.zeros((image_size, image_size, 2))
  points = identity.landmarks()
  for au, (w_left, w_right) in weights.items():
    if au not in AU_MOVES:
      raise ValueError(f"no displacement model for AU{au}: known {sorted(AU_MOVES)}")
    for stem, (dx, dy), radius in AU_MOVES[au]:
      if f"{stem}_l" in points:
        sides = ((f"{stem}_l", -dx, w_left), (f"{stem}_r", dx, w_right))
      else:
        sides = ((stem, dx, 0.5 * (w_left + w_right)),)
      for name, sdx, w in sides:
        cx, cy = points[name]
        bump = w * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * radius ** 2))
        field[..., 0] += sdx * bump
        field[..., 1] += dy * bump
  peak = np.linalg.norm(field, axis=-1).max()
  if amplitude_px == 0 or peak == 0:
    return np.zeros_like(field, dtype=np.float32)
  return (field * (amplitude_px / peak)).astype(np.float32)


def intensity_curve(length: int, apex: int, *, rise_power: float = 1.0, fall_power: float = 1.0,
                    residual: float = 0.0) -> np.ndarray:
  """Expression intensity per frame, float64 `[time]`: 0 at onset, 1 at the apex.

  With u = i / apex on the rise and v = (i - apex) / (length - 1 - apex) on the fall:
  s_i = ((1 - cos(pi u)) / 2) ** rise_power  for i <= apex,
  s_i = residual + (1 - residual) * ((1 + cos(pi v)) / 2) ** fall_power  after it,
  so the offset keeps `residual` (micro-expressions need not fully relax).

  >>> np.round(intensity_curve(5, 2), 3)
  array([0. , 0.5, 1. , 0.5, 0. ])
  """
  if length < 2 or not 0 <= apex < length:
    raise ValueError(f"need length >= 2 and 0 <= apex < length, got length={length}, apex={apex}")
  i = np.arange(length, dtype=np.float64)
  rise = ((1 - np.cos(np.pi * i / max(apex, 1))) / 2) ** rise_power
  v = (i - apex) / max(length - 1 - apex, 1)
  fall = residual + (1 - residual) * ((1 + np.cos(np.pi * np.clip(v, 0, 1))) / 2) ** fall_power
  return np.where(i <= apex, rise, fall)


def sample_time_course(rng: np.random.Generator, min_frames: int, max_frames: int, *,
                       middle_apex: bool = False) -> tuple[np.ndarray, int]:
  """A clip's length, apex and intensity curve: (intensity float64 `[time]`, apex index).

  Length uniform in [min_frames, max_frames]; apex at 15-65 % of the clip (never the first or
  last frame), or at the middle frame (length - 1) // 2 if `middle_apex` (the same draws are
  made either way); rise/fall shape powers in [0.6, 1.6]; offset residual in [0, 0.1].

  >>> s, apex = sample_time_course(np.random.default_rng(0), 20, 40)
  >>> bool(20 <= len(s) <= 40 and s[apex] == 1 and s.argmax() == apex and s[0] == 0)
  True
  """
  length = int(rng.integers(min_frames, max_frames + 1))
  apex = int(np.clip(round(rng.uniform(0.15, 0.65) * (length - 1)), 1, length - 2))
  if middle_apex:
    apex = (length - 1) // 2
  curve = intensity_curve(length, apex, rise_power=rng.uniform(0.6, 1.6),
                          fall_power=rng.uniform(0.6, 1.6), residual=rng.uniform(0.0, 0.1))
  return curve, apex
