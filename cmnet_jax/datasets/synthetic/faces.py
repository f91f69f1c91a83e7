"""Procedural face identities, rendered analytically at any (continuous) image coordinate.

A face is a stack of soft-edged shapes (face oval, hair, brows, eyes with lids and irises, nose,
nostrils, nasolabial folds, lips, chin crease) over a background, with a smooth skin texture and
a directional light. Because `render_face` evaluates the face at arbitrary coordinates, a frame
whose face has moved by a displacement field d is rendered *exactly* as `I(p) = face(p - d(p))`
(no resampling blur), so a sub-pixel Action-Unit motion reaches the pixels unattenuated.

Coordinates are normalised: x (right) and y (down) in [0, 1] across the square image; edges are
softened over about `edge_px` pixels, which also anti-aliases the rendering.
"""
import dataclasses
from typing import Mapping

import numpy as np

_SKIN_LIGHT = np.array([0.96, 0.82, 0.72])
_SKIN_DARK = np.array([0.42, 0.28, 0.20])
_HAIR = np.array([[0.08, 0.06, 0.05], [0.30, 0.20, 0.12], [0.55, 0.42, 0.25], [0.45, 0.18, 0.10]])
_IRIS = np.array([[0.30, 0.18, 0.10], [0.25, 0.40, 0.60], [0.30, 0.45, 0.30], [0.15, 0.10, 0.08]])


@dataclasses.dataclass(frozen=True)
class Identity:
  """One subject's face: geometry in normalised units, colours in linear [0, 1] RGB."""
  face: np.ndarray        # [4]: centre x, centre y, half-width, half-height
  eye: np.ndarray         # [5]: y, half-distance between eyes, half-width, half-height, iris r
  brow: np.ndarray        # [5]: gap above the eye, half-length, thickness, arch, inner tilt
  nose: np.ndarray        # [3]: tip y, nostril half-distance, nostril radius
  mouth: np.ndarray       # [5]: y, half-width, upper lip, lower lip, smile curvature
  chin_y: float
  skin: np.ndarray        # [3]
  hair: np.ndarray        # [3]
  iris: np.ndarray        # [3]
  lips: np.ndarray        # [3]
  background: np.ndarray  # [3]
  light: np.ndarray       # [3]: direction x, direction y, strength
  texture: np.ndarray     # [k, 4]: frequency x, frequency y (cycles/image), phase, amplitude

  def landmarks(self) -> Mapping[str, tuple[float, float]]:
    """Named points (normalised x, y) that the Action Units move; 'l' is image-left."""
    cx, cy, fw, fh = self.face
    ey, ex, ew, eh, _ = self.eye
    gap, blen, _, _, _ = self.brow
    ny, nd, nr = self.nose
    my, mw, up, lo, _ = self.mouth
    by = ey - eh - gap
    points = {"glabella": (cx, by + 0.01), "nose_root": (cx, ey), "chin": (cx, self.chin_y),
              "upper_lip": (cx, my - up), "lower_lip": (cx, my + lo)}
    for side, s in (("l", -1.0), ("r", 1.0)):
      points[f"brow_inner_{side}"] = (cx + s * (ex - 0.7 * blen), by)
      points[f"brow_outer_{side}"] = (cx + s * (ex + 0.7 * blen), by)
      points[f"eye_upper_{side}"] = (cx + s * ex, ey - eh)
      points[f"eye_lower_{side}"] = (cx + s * ex, ey + eh)
      points[f"cheek_{side}"] = (cx + s * (ex + 0.2 * ew), ey + 3.5 * eh + 0.03)
      points[f"nose_side_{side}"] = (cx + s * (nd + nr), ny - 2.0 * nr)
      points[f"upper_lip_{side}"] = (cx + s * 0.45 * mw, my - up)
      points[f"lip_corner_{side}"] = (cx + s * mw, my)
    return points


def make_identity(rng: np.random.Generator) -> Identity:
  """Draws a random face (shape, skin tone, feature positions, texture, lighting).

  >>> a = make_identity(np.random.default_rng(0)); b = make_identity(np.random.default_rng(0))
  >>> bool(np.array_equal(a.eye, b.eye) and 0.3 < a.face[2] < 0.45)
  True
  """
  u = rng.uniform
  cx, cy = 0.5 + u(-0.015, 0.015), 0.54 + u(-0.015, 0.015)
  fw, fh = u(0.35, 0.41), u(0.43, 0.49)
  ew = u(0.065, 0.085)
  eye = np.array([cy - fh * u(0.2, 0.28), fw * u(0.42, 0.5), ew, ew * u(0.38, 0.5),
                  ew * u(0.4, 0.5)])
  brow = np.array([u(0.035, 0.055), ew * u(1.1, 1.4), u(0.012, 0.022), u(2.0, 6.0), u(-0.15, 0.15)])
  ny = cy + fh * u(0.12, 0.2)
  nose = np.array([ny, u(0.035, 0.05), u(0.010, 0.015)])
  my = cy + fh * u(0.44, 0.52)
  mouth = np.array([my, u(0.11, 0.15), u(0.016, 0.026), u(0.022, 0.036), u(-1.5, 2.0)])
  tone = u(0.0, 1.0)
  skin = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK + u(-0.03, 0.03, 3)
  angle = u(0, 2 * np.pi)
  k = 10
  freq = u(3.0, 18.0, k)
  theta = u(0, 2 * np.pi, k)
  texture = np.stack([freq * np.cos(theta), freq * np.sin(theta), u(0, 2 * np.pi, k),
                      u(0.004, 0.015, k)], axis=1)
  return Identity(
      face=np.array([cx, cy, fw, fh]), eye=eye, brow=brow, nose=nose, mouth=mouth,
      chin_y=min(my + u(0.09, 0.12), cy + 0.92 * fh), skin=np.clip(skin, 0.05, 1.0),
      hair=_HAIR[rng.integers(len(_HAIR))] * u(0.8, 1.2),
      iris=_IRIS[rng.integers(len(_IRIS))] * u(0.8, 1.2),
      lips=np.clip(skin * np.array([0.85, 0.55, 0.55]) + u(-0.03, 0.03, 3), 0, 1),
      background=u(0.15, 0.6, 3), light=np.array([np.cos(angle), np.sin(angle), u(0.05, 0.2)]),
      texture=texture)


def _soft(signed: np.ndarray, edge: float) -> np.ndarray:
  """Coverage in [0, 1] from a signed distance (positive inside): a smoothstep over [-edge, edge].

  Exactly 0 beyond `edge` outside the shape, so a shape only needs evaluating inside its box.
  """
  t = np.clip(0.5 + signed * (0.5 / edge), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def _ellipse(x, y, cx, cy, a, b, edge):
  r = np.sqrt(((x - cx) * (1.0 / a)) ** 2 + ((y - cy) * (1.0 / b)) ** 2)
  return _soft((1.0 - r) * min(a, b), edge)


def _stroke(x, y, x0, x1, y_of_x, width, edge):
  """A line of half-width `width` along y = y_of_x(x) (or a constant) for x in [x0, x1].

  The line tapers towards its ends; distance is measured vertically (strokes are shallow).
  """
  mid, half = 0.5 * (x0 + x1), 0.5 * (x1 - x0)
  t = np.clip((x - mid) * (1.0 / half), -1.0, 1.0)
  w = width * (1.0 - 0.6 * t ** 2)
  centre = y_of_x(x) if callable(y_of_x) else y_of_x
  return _soft(w - np.abs(y - centre), edge) * _soft(half - np.abs(x - mid), edge)


class _Painter:
  """Alpha-composites shapes onto an image `[..., height, width, 3]` sampled at points (x, y).

  Each shape is evaluated only on the pixels whose sample points can fall inside its box
  (x0, x1, y0, y1), found from per-row and per-column coordinate ranges, so small features cost
  little even when the sample points are displaced.
  """

  def __init__(self, x, y, extra, edge):
    self.x, self.y, self.extra = x, y, extra
    self.edge = edge
    lead = tuple(range(x.ndim - 2))
    self.rows = (y.min(axis=lead + (x.ndim - 1,)), y.max(axis=lead + (x.ndim - 1,)))
    self.cols = (x.min(axis=lead + (x.ndim - 2,)), x.max(axis=lead + (x.ndim - 2,)))
    self.img = np.zeros(x.shape + (3,), np.float32)

  def _region(self, x0, x1, y0, y1):
    m = 1.5 * self.edge
    rows = np.flatnonzero((self.rows[1] >= y0 - m) & (self.rows[0] <= y1 + m))
    cols = np.flatnonzero((self.cols[1] >= x0 - m) & (self.cols[0] <= x1 + m))
    if not rows.size or not cols.size:
      return None
    return (Ellipsis, slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))

  def paint(self, box, coverage, colour, opacity=1.0):
    """coverage(x, y, extra) -> [...]; colour: RGB or colour(x, y) -> [..., 3]."""
    region = self._region(*box)
    if region is None:
      return
    x, y, extra = self.x[region], self.y[region], self.extra[region]
    alpha = coverage(x, y, extra) * np.float32(opacity)
    colour = colour(x, y) if callable(colour) else np.asarray(colour, np.float32)
    target = self.img[region + (slice(None),)]
    target += alpha[..., None] * (colour - target)


def render_face(identity: Identity, x: np.ndarray, y: np.ndarray, *, image_size: int,
                blink: np.ndarray | float = 0.0, edge_px: float = 0.6) -> np.ndarray:
  """Colour of the face at normalised points: float32 `[..., height, width, 3]` in about [0, 1].

  Args:
    identity: the face.
    x, y: float32 arrays broadcastable to `[..., height, width]` (e.g. `[time, height, width]`):
      the normalised face coordinates sampled by each pixel. Shapes are only evaluated on the
      pixels whose rows/columns can reach them, so the last two axes must be the image grid.
    image_size: pixels across the image (sets the edge softness `edge_px / image_size`).
    blink: eyelid closure in [0, 1] (0 open, 1 shut), broadcastable, e.g. `[time, 1, 1]`.
    edge_px: half-width of the anti-aliased edges, in pixels.

  >>> idt = make_identity(np.random.default_rng(1))
  >>> g = (np.arange(16, dtype=np.float32) + 0.5) / 16
  >>> render_face(idt, g[None, :], g[:, None], image_size=16).shape
  (16, 16, 3)
  """
  e = edge_px / image_size
  f32 = lambda a: np.asarray(a, np.float32)
  cx, cy, fw, fh = map(float, identity.face)
  ey, ex, ew, eh, ir = map(float, identity.eye)
  gap, blen, bthick, arch, tilt = map(float, identity.brow)
  ny, nd, nr = map(float, identity.nose)
  my, mw, up, lo, smile = map(float, identity.mouth)
  chin, skin, hair = float(identity.chin_y), f32(identity.skin), f32(identity.hair)
  dark = skin * np.float32(0.55)
  x, y, blink = np.broadcast_arrays(f32(x), f32(y), f32(blink))
  p = _Painter(x, y, blink, e)
  p.img[...] = f32(identity.background) * (1.0 + 0.25 * (0.5 - y))[..., None]
  hy = cy - 0.12
  p.paint((cx - 1.12 * fw, cx + 1.12 * fw, hy - 0.95 * fh, hy + 0.95 * fh),
          lambda x, y, _: _ellipse(x, y, cx, hy, fw * 1.12, fh * 0.95, e), hair)
  waves = [tuple(map(float, w)) for w in identity.texture]
  lx, ly, strength = map(float, identity.light)

  def skin_colour(x, y):
    dx, dy = x - cx, y - cy
    shade = (1.0 + strength * (lx * dx + ly * dy) / fw
             - 0.25 * ((dx / fw) ** 2 + (dy / fh) ** 2) ** 2)
    for fx, fy, phase, amp in waves:
      shade += amp * np.sin((2 * np.pi * fx) * x + (2 * np.pi * fy) * y + phase)
    return skin * shade[..., None]

  face_box = (cx - fw, cx + fw, cy - fh, cy + fh)
  p.paint(face_box, lambda x, y, _: _ellipse(x, y, cx, cy, fw, fh, e), skin_colour)
  p.paint((cx - fw, cx + fw, cy - fh, cy - 0.74 * fh),
          lambda x, y, _: _soft(cy - 0.78 * fh + 0.04 * np.cos(np.pi * (x - cx) / fw) - y, 2 * e)
          * _ellipse(x, y, cx, cy, fw * 1.01, fh * 1.01, e), hair)
  for s in (-1.0, 1.0):
    ecx, by = cx + s * ex, ey - eh - gap
    brow = lambda xx, ecx=ecx, by=by, s=s: by + arch * (xx - ecx) ** 2 + s * tilt * 0.3 * (xx - ecx)
    reach = abs(tilt) * 0.3 * blen + bthick
    p.paint((ecx - blen, ecx + blen, by - reach, by + arch * blen ** 2 + reach),
            lambda x, y, _, brow=brow, ecx=ecx: _stroke(x, y, ecx - blen, ecx + blen, brow,
                                                        bthick, e),
            hair, 0.9)
    # Eye: visible between the upper lid (which drops as the eye blinks) and the lower lid.
    def lid(x, closure, ecx=ecx):
      half = np.sqrt(np.clip(1.0 - ((x - ecx) / ew) ** 2, 0.0, 1.0)) * eh
      return ey - half + closure * 2.0 * half

    def opening(x, y, closure, ecx=ecx, lid=lid):
      return _ellipse(x, y, ecx, ey, ew, eh, e) * _soft(y - lid(x, closure), e)

    eye_box = (ecx - ew, ecx + ew, ey - eh, ey + eh)
    p.paint(eye_box, opening, (0.92, 0.9, 0.88))
    p.paint(eye_box, lambda x, y, c, o=opening, ecx=ecx: o(x, y, c) * _ellipse(
        x, y, ecx, ey, ir, ir, e),
            identity.iris)
    p.paint(eye_box, lambda x, y, c, o=opening, ecx=ecx: o(x, y, c) * _ellipse(
        x, y, ecx, ey, 0.4 * ir, 0.4 * ir, e), (0.03, 0.03, 0.03))
    p.paint((ecx - 1.05 * ew, ecx + 1.05 * ew, ey - eh - 0.01, ey + eh + 0.01),
            lambda x, y, c, lid=lid, ecx=ecx: _soft(0.35 * e + 0.004 - np.abs(y - lid(x, c)), e)
            * _soft(ew * 1.05 - np.abs(x - ecx), e), hair * 0.5, 0.85)
    p.paint((ecx - ew, ecx + ew, ey + eh, ey + eh + 0.02),
            lambda x, y, _, ecx=ecx: _stroke(x, y, ecx - 0.8 * ew, ecx + 0.8 * ew, ey + eh + 0.012,
                                             0.004, e), dark, 0.35)
    # Nostril and nasolabial fold.
    p.paint((cx + s * nd - 1.3 * nr, cx + s * nd + 1.3 * nr, ny - nr, ny + nr),
            lambda x, y, _, s=s: _ellipse(x, y, cx + s * nd, ny, nr * 1.3, nr, e), dark * 0.6, 0.8)
    fx0, fx1 = nd + 1.5 * nr, mw + 0.02
    fold = lambda xx, s=s, fx0=fx0, fx1=fx1: ny - nr + (my - ny + nr) * np.clip(
        (s * (xx - cx) - fx0) / (fx1 - fx0), 0.0, 1.0) ** 1.5
    x0, x1 = sorted((cx + s * fx0, cx + s * fx1))
    p.paint((x0, x1, ny - nr - 0.01, my + 0.01),
            lambda x, y, _, f=fold, x0=x0, x1=x1: _stroke(x, y, x0, x1, f, 0.006, e), dark, 0.35)
  p.paint((cx - 0.6 * nd, cx + 0.6 * nd, ny, ny + 1.5 * nr + 0.01),
          lambda x, y, _: _stroke(x, y, cx - nd * 0.6, cx + nd * 0.6,
                                  lambda xx: ny + 1.5 * nr - 6.0 * (xx - cx) ** 2, 0.008, e),
          skin * 1.12, 0.25)
  p.paint((cx - 0.01, cx + 0.01, ny - 0.01, ny + 0.01),
          lambda x, y, _: _stroke(x, y, cx - 0.01, cx + 0.01, ny, 0.004, e), dark, 0.2)
  mouth_line = lambda xx: my - smile * (xx - cx) ** 2
  bend = abs(smile) * mw ** 2

  def lips(x, y, _):
    half = np.sqrt(np.clip(1 - ((x - cx) / mw) ** 2, 0, 1))
    centre = mouth_line(x)
    return (_soft(y - (centre - up * half), e) * _soft(centre + lo * half - y, e)
            * _soft(mw - np.abs(x - cx), e))

  p.paint((cx - mw, cx + mw, my - bend - up, my + bend + lo), lips, identity.lips)
  p.paint((cx - mw, cx + mw, my - bend - 0.01, my + bend + 0.01),
          lambda x, y, _: _stroke(x, y, cx - mw, cx + mw, mouth_line, 0.004, e),
          f32(identity.lips) * 0.4, 0.9)
  p.paint((cx - 0.5 * mw, cx + 0.5 * mw, chin - 0.03, chin + mw ** 2 + 0.01),
          lambda x, y, _: _stroke(x, y, cx - 0.5 * mw, cx + 0.5 * mw,
                                  lambda xx: chin - 0.02 + 4.0 * (xx - cx) ** 2, 0.006, e),
          dark, 0.3)
  return p.img
