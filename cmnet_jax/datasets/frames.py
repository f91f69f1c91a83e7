"""Finding a clip's frame files, anchored temporal sampling, and decoding to uint8 arrays.

Sampling (docs/method.md, "Frames"): T positions anchored on the annotations -- onset, frames
evenly spaced between onset and apex, the apex at position T // 2, frames evenly spaced between
apex and offset, the offset. Deterministic for evaluation; with an `np.random.Generator` the
in-between positions are jittered for training, always staying between their two anchors.

Odd files are dealt with before any work: two files with one frame number are an error naming
both; a frame whose size differs from the rest of its clip is left out with a note (as a missing
frame); 16-bit greyscale images are scaled to 8 bits, not clipped.
"""
import contextlib
import os
import re
import stat
import warnings
from typing import Iterator

import numpy as np
from PIL import Image

from cmnet_jax.datasets.index import ClipRecord, DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".png")
# The largest frame read, in pixels (width x height), checked from the file's header before any
# pixel is decoded: a decompression bomb (a small PNG whose header claims 20000x20000) is refused
# naming the frame. 8192 x 8192, far above any micro-expression camera (SAMM: 2040 x 1088) and
# below PIL's own limit (`PIL.Image.MAX_IMAGE_PIXELS`, 89 million, which only warns).
MAX_FRAME_PIXELS = 8192 * 8192
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_number(filename: str) -> int | None:
  """The integer after the last non-digit of a frame file's stem (padding ignored).

  >>> [frame_number(f) for f in ('img46.jpg', 'reg_img46.jpg', '006_05562.jpg', '355.jpg', 'x.jpg')]
  [46, 46, 5562, 355, None]
  """
  match = _LAST_NUMBER.search(os.path.splitext(os.path.basename(filename))[0])
  return int(match.group(1)) if match else None


def find_child(parent: str, name: str) -> str | None:
  """`parent/name`, matching the name case-insensitively; None if there is no such entry."""
  path = os.path.join(parent, name)
  if os.path.exists(path):
    return path
  if not os.path.isdir(parent):
    return None
  for entry in sorted(os.listdir(parent)):
    if entry.lower() == name.lower():
      return os.path.join(parent, entry)
  return None


def check_inside(parent: str, name: str, item: str, what: str = "Filename") -> None:
  """A DatasetError naming `item` (the annotation row) if the annotation value `name`, joined to
  `parent`, leads outside it (`..`, an absolute path): a path built from an annotation cell must
  never read frames from elsewhere than the database's folder."""
  target = os.path.normpath(os.path.join(parent, name))
  base = os.path.normpath(parent)
  if "\0" in name or os.path.isabs(name) or os.path.commonpath([base, target]) != base:
    raise DatasetError(f"{item}: {what} {name!r} leads outside the folder {parent!r} "
                       f"(to {target!r}); expected the name of a folder in it (edit the row: an "
                       f"annotation value never names a path elsewhere)")


def list_frames(folder: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, *,
                within: tuple[int, int] | None = None, item: str = "") -> list[tuple[int, str]]:
  """(frame number, path) of every numbered image file in `folder`, sorted by frame number.

  Hidden files (`._reg_img46.jpg`, left by macOS) are not frames. Two files with the same frame
  number (`img46.jpg` and `img046.jpg`, or a `.jpg` and a `.bmp`) are a DatasetError naming both
  when the number lies in `within` = (first, last) (default: any number), since which one is the
  frame cannot be known; outside it the first name in sorted order is listed. So is an entry
  named like a frame that is not a regular file (a named pipe, whose reading would wait forever,
  a device such as a link to /dev/zero, a folder, a broken link); outside `within` it is ignored.
  """
  found: dict[int, list[str]] = {}
  with os.scandir(folder) as it:
    entries = sorted((e.name, e) for e in it)
  for name, entry in entries:
    number = frame_number(name)
    if number is None or not name.lower().endswith(suffixes) or name.startswith("."):
      continue
    if not entry.is_file():
      if within is None or within[0] <= number <= within[1]:
        raise DatasetError(
            f"{item + ': ' if item else ''}frame {number} {os.path.join(folder, name)!r} is "
            f"{_kind(entry.path)}, not an image file; expected a jpg/bmp/png file (replace it)")
      continue
    found.setdefault(number, []).append(name)
  for number, entries in sorted(found.items()):
    if len(entries) > 1 and (within is None or within[0] <= number <= within[1]):
      raise DatasetError(
          f"{item + ': ' if item else ''}frame {number} is given by {len(entries)} files in "
          f"{folder!r}: {', '.join(map(repr, entries))}; expected one file per frame number "
          f"(remove or rename all but one)")
  return [(n, os.path.join(folder, entries[0])) for n, entries in sorted(found.items())]


@contextlib.contextmanager
def open_frame(path: str, item: str = "") -> Iterator[Image.Image]:
  """`PIL.Image.open(path)` (the header only), refusing with a DatasetError naming the frame an
  image of more than `MAX_FRAME_PIXELS` pixels (a decompression bomb) or an unreadable file."""
  prefix = f"{item}: " if item else ""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image = Image.open(path)
  except Image.DecompressionBombError as e:
    raise DatasetError(f"{prefix}frame {path!r} claims more pixels than any frame may have "
                       f"({e}); the limit is {MAX_FRAME_PIXELS} pixels "
                       f"(frames.MAX_FRAME_PIXELS): replace the file") from None
  except (OSError, SyntaxError, ValueError) as e:
    raise DatasetError(f"{prefix}corrupt or unreadable image {path!r} ({e}); expected a "
                       f"jpg/bmp/png frame") from e
  with image:
    width, height = image.size
    if width * height > MAX_FRAME_PIXELS:
      raise DatasetError(f"{prefix}frame {path!r} is {width}x{height} = {width * height} pixels "
                         f"by its header, above the limit of {MAX_FRAME_PIXELS} "
                         f"(frames.MAX_FRAME_PIXELS; a decompression bomb or a wrong file): "
                         f"replace it with the clip's frame")
    yield image


def _kind(path: str) -> str:
  """What a non-regular entry is, in words."""
  try:
    mode = os.stat(path).st_mode
  except OSError as e:
    return f"a link to nothing ({e.strerror})" if os.path.islink(path) else f"unreadable ({e})"
  for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                     (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                     (stat.S_ISSOCK, "a socket")):
    if test(mode):
      return what
  return "not a regular file"


def frame_size(path: str, item: str = "") -> tuple[int, int]:
  """(width, height) from the image file's header (the pixels are not decoded)."""
  with open_frame(path, item) as image:
    return image.size


def same_size(frames: list[tuple[int, str]], item: str
              ) -> tuple[list[tuple[int, str]], str | None]:
  """The frames of the clip's size (the most common one; on a tie, the first frame's), and a note
  naming each frame of another size, left out like a missing frame (None if there is none)."""
  sizes = [frame_size(p, item) for _, p in frames]
  counts = {s: sizes.count(s) for s in sizes}
  size = max(counts, key=lambda s: (counts[s], -sizes.index(s)))
  odd = [(n, p, s) for (n, p), s in zip(frames, sizes) if s != size]
  if not odd:
    return frames, None
  listed = ", ".join(f"{n} ({os.path.basename(p)}, {s[0]}x{s[1]})" for n, p, s in odd[:5])
  note = (f"{item}: {len(odd)} frame(s) of another size than the clip's other "
          f"{len(frames) - len(odd)} ({size[0]}x{size[1]}): {listed}"
          f"{' ...' if len(odd) > 5 else ''}; left out, as missing frames")
  return [(n, p) for (n, p), s in zip(frames, sizes) if s == size], note


# A frame range missing more than this many frames, and more than twice the frames it has, is
# refused as a typo in the annotation (e.g. offset 1e9): `clip_frames`.
IMPLAUSIBLE_MISSING = 50


def clip_frames(folder: str, onset: int, offset: int, item: str,
                suffixes: tuple[str, ...] = IMAGE_SUFFIXES, *, row: str = ""
                ) -> tuple[tuple[int, ...], tuple[str, ...], list[str]]:
  """Frames numbered onset..offset in `folder`: (numbers, paths, notes on missing frames and on
  frames of another size, left out; see `same_size`).

  Raises DatasetError (naming `item` and `row`, the annotation row) if the folder has no image
  at all or none of the wanted frames, if two of the wanted frames share a number
  (`list_frames`), or if the range is implausible against the files present: more than
  `IMPLAUSIBLE_MISSING` frames missing and more than twice the frames present (a typo such as
  offset 1e9, which would otherwise be listed frame by frame).
  """
  where = f"{item}{f' ({row})' if row else ''}"
  frames = list_frames(folder, suffixes, within=(onset, offset), item=item)
  if not frames:
    raise DatasetError(f"{where}: clip folder {folder!r} holds no frame images "
                       f"(expected files {onset}..{offset} with suffix {suffixes})")
  kept = [(n, p) for n, p in frames if onset <= n <= offset]
  if not kept:
    raise DatasetError(f"{where}: clip folder {folder!r} has none of frames {onset}..{offset} "
                       f"(its files are numbered {frames[0][0]}..{frames[-1][0]})")
  notes = []
  missing = (offset - onset + 1) - len(kept)
  if missing > max(IMPLAUSIBLE_MISSING, 2 * len(kept)):
    raise DatasetError(
        f"{where}: frame range {onset}..{offset} ({offset - onset + 1} frames) is implausible: "
        f"the clip folder {folder!r} holds {len(frames)} frame files, numbered "
        f"{frames[0][0]}..{frames[-1][0]}, {len(kept)} of them in the range; check the row's "
        f"onset and offset (a typo?)")
  if missing:
    have = {n for n, _ in kept}
    gaps = []
    for n in range(onset, offset + 1):   # at most len(kept) + 5 steps
      if n not in have:
        gaps.append(n)
        if len(gaps) == 5:
          break
    notes.append(f"{item}: {missing} of {offset - onset + 1} frames missing in {folder!r} "
                 f"(e.g. {gaps[:5]}); using the {len(kept)} present")
  kept, note = same_size(kept, item)
  notes += [note] if note else []
  return tuple(n for n, _ in kept), tuple(p for _, p in kept), notes


SAMPLINGS = ("anchored", "uniform")


def sample_frame_indices(num_available: int, apex_offset: int, num_frames: int, *,
                         rng: np.random.Generator | None = None,
                         mode: str = "anchored") -> tuple[np.ndarray, int]:
  """Positions of T = `num_frames` frames in a clip of `num_available` frames.

  `mode='uniform'` ignores the apex when placing frames: position t is round((n - 1) t / (T - 1))
  (onset and offset exact, the rest evenly spaced and jittered as below), and the returned apex
  index is the sampled position nearest the apex p, so the apex falls at a different index in
  every clip (as when a database's apex is not annotated). The default, 'anchored':

  With a = T // 2 and apex offset p, position t is  round(p * t / a)  for t <= a and
  round(p + (n - 1 - p) * (t - a) / (T - 1 - a))  for t > a: onset (0), apex (p) and offset
  (n - 1) exactly, the rest evenly spaced between them. Clips shorter than T repeat frames.
  With `rng`, each in-between position moves by up to half a spacing (uniform) and is kept
  between its anchors and in non-decreasing order.

  Args:
    num_available: n, frames onset..offset available (>= 1).
    apex_offset: p, the apex's position among them, 0 <= p < n (p may be 0 or n - 1).
    num_frames: T >= 1 (T >= 3 to include onset, apex and offset).
    rng: None for deterministic (evaluation) sampling, else a NumPy Generator (training).
    mode: 'anchored' or 'uniform' (see above).

  Returns:
    positions int32 `[time]` into the n frames, and the apex's index in them (T // 2 when
    anchored).

  >>> sample_frame_indices(41, 20, 9)
  (array([ 0,  5, 10, 15, 20, 25, 30, 35, 40], dtype=int32), 4)
  >>> sample_frame_indices(3, 0, 5)[0]
  array([0, 0, 0, 1, 2], dtype=int32)
  >>> sample_frame_indices(41, 12, 9, mode='uniform')
  (array([ 0,  5, 10, 15, 20, 25, 30, 35, 40], dtype=int32), 2)
  """
  if num_available < 1 or num_frames < 1:
    raise ValueError(f"need num_available >= 1 and num_frames >= 1, got {num_available}, "
                     f"{num_frames}")
  if not 0 <= apex_offset < num_available:
    raise ValueError(f"apex_offset {apex_offset} outside [0, {num_available - 1}]")
  if mode not in SAMPLINGS:
    raise ValueError(f"frame sampling mode: expected one of {SAMPLINGS}, got {mode!r}")
  if mode == "uniform":
    positions, _ = sample_frame_indices(num_available, 0, num_frames, rng=rng) if (
        num_frames < 3) else _uniform(num_available, num_frames, rng)
    return positions, int(np.argmin(np.abs(positions.astype(np.int64) - apex_offset)))
  a = num_frames // 2
  segments = [(0, apex_offset, a), (apex_offset, num_available - 1, num_frames - 1 - a)]
  positions = [0.0]
  for start, stop, steps in segments:
    if steps == 0:
      continue
    spacing = (stop - start) / steps
    inner = start + spacing * np.arange(1, steps, dtype=np.float64)
    if rng is not None:
      inner = inner + rng.uniform(-0.5, 0.5, size=inner.shape) * spacing
      inner = np.maximum.accumulate(np.clip(inner, start, stop))
    positions += list(inner) + [float(stop)]
  out = np.clip(np.floor(np.asarray(positions) + 0.5), 0, num_available - 1).astype(np.int32)
  return out, a


def _uniform(num_available: int, num_frames: int, rng) -> tuple[np.ndarray, None]:
  spacing = (num_available - 1) / (num_frames - 1)
  inner = spacing * np.arange(1, num_frames - 1, dtype=np.float64)
  if rng is not None:
    inner = inner + rng.uniform(-0.5, 0.5, size=inner.shape) * spacing
    inner = np.maximum.accumulate(np.clip(inner, 0, num_available - 1))
  positions = np.r_[0.0, inner, float(num_available - 1)]
  return np.clip(np.floor(positions + 0.5), 0, num_available - 1).astype(np.int32), None


def to_rgb8(image: Image.Image) -> Image.Image:
  """8-bit RGB; 16-bit greyscale (PIL modes 'I;16*', or 'I' holding 16-bit values) is scaled by
  255 / 65535 and rounded, where PIL's own conversion would clip every value above 255."""
  if image.mode.startswith("I;16") or image.mode == "I":
    levels = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
    image = Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8), "L")
  return image.convert("RGB")


def decode_frame(path: str, image_size: int, item: str = "") -> np.ndarray:
  """One frame as uint8 `[height, width, 3]`, grey expanded to RGB (16-bit scaled, `to_rgb8`),
  bilinear-resized to square."""
  if not os.path.isfile(path):
    raise DatasetError(f"{item}: frame file {path!r} does not exist (expected a jpg/bmp image)")
  with open_frame(path, item) as image:
    try:
      image.load()
      image = to_rgb8(image)
    except (OSError, SyntaxError, ValueError) as e:
      raise DatasetError(f"{item}: corrupt or unreadable image {path!r} ({e}); expected a "
                         f"jpg/bmp/png frame") from e
  if image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
  return np.asarray(image, dtype=np.uint8)


def load_clip(record: ClipRecord, *, num_frames: int, image_size: int,
              rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
  """Samples and decodes a clip: uint8 `[time, image_size, image_size, 3]` and the apex index.

  Positions come from `sample_frame_indices(len(record.frame_paths), record.apex_index,
  num_frames, rng=rng)`; each distinct frame is decoded once.
  """
  if not record.frame_paths:
    raise DatasetError(f"{record.dataset} {record.subject}/{record.clip_id}: no frame paths")
  positions, apex = sample_frame_indices(len(record.frame_paths), record.apex_index, num_frames,
                                         rng=rng)
  return read_frames(record, positions, image_size=image_size), apex


def read_frames(record: ClipRecord, positions: np.ndarray, *, image_size: int) -> np.ndarray:
  """Decodes `record.frame_paths[positions]`: uint8 `[time, image_size, image_size, 3]`.

  Each distinct frame is decoded once; positions index `frame_paths` (see `sample_frame_indices`).
  """
  item = f"{record.dataset} {record.subject}/{record.clip_id}"
  positions = [int(p) for p in np.asarray(positions).reshape(-1)]
  if not record.frame_paths or not all(0 <= p < len(record.frame_paths) for p in positions):
    raise DatasetError(f"{item}: positions {positions} outside its {len(record.frame_paths)} "
                       f"frames")
  decoded = {p: decode_frame(record.frame_paths[p], image_size, item) for p in set(positions)}
  return np.stack([decoded[p] for p in positions])


# A clip needs its onset, apex and offset frames to show a motion (predict's `MIN_FRAMES` too).
MIN_CLIP_FRAMES = 3


def too_short(record: ClipRecord) -> str | None:
  """The reason to skip a clip with fewer than `MIN_CLIP_FRAMES` frames (None if it has them):
  sampled, its one or two frames would be repeated into a clip without motion."""
  if len(record.frame_paths) >= MIN_CLIP_FRAMES:
    return None
  return (f"{len(record.frame_paths)} frame(s) between onset {record.onset} and offset "
          f"{record.offset}; a clip needs at least {MIN_CLIP_FRAMES} (onset, apex and offset) to "
          f"show a motion")


def annotated_record(dataset: str, subject: str, clip_id: str, folder: str, onset: int,
                     apex: int | None, offset: int, emotion: str, action_units: str,
                     notes: list[str], *, apex_written: object = None,
                     suffixes: tuple[str, ...] = IMAGE_SUFFIXES, row: str = "") -> ClipRecord:
  """A record for an annotated clip folder; an apex that is not coded ('/') or lies outside
  [onset, offset] becomes the middle frame (onset + offset) // 2, with a note appended.
  `row` ('CASME2-coding-20190701.xlsx row 5') is named in errors."""
  item = f"{dataset} {subject}/{clip_id}"
  numbers, paths, found = clip_frames(folder, onset, offset, item, suffixes, row=row)
  notes += found
  if apex is None or not onset <= apex <= offset:
    middle = (onset + offset) // 2
    why = "not coded" if apex is None else f"outside [{onset}, {offset}]"
    notes.append(f"{item}: apex {apex_written if apex is None else apex!r} {why}; using the "
                 f"middle frame {middle}")
    apex = middle
  return ClipRecord(dataset, subject, clip_id, paths, onset, apex, offset, emotion, -1,
                    action_units, numbers)


def resolve_folder(root: str, given: str | None, candidates: tuple[str, ...], dataset: str,
                   what: str = "frames") -> str:
  """`given` (relative to root or absolute) or the first candidate under root that exists;
  path components match case-insensitively ('' = root itself)."""
  if given:
    path = os.path.join(root, given)
    if not os.path.isdir(path):
      raise DatasetError(f"{dataset}: {what} folder {path!r} does not exist")
    return path
  for candidate in candidates:
    path = root
    for part in [p for p in candidate.split("/") if p]:
      path = find_child(path, part) if path else None
    if path and os.path.isdir(path):
      return path
  raise DatasetError(f"{dataset}: no {what} folder under {root!r}; looked for "
                     f"{[c or '.' for c in candidates]}; pass {what}= to name it")
