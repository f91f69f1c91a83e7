"""Converts a torchvision ResNet-18 state dict (`.pth`) into the `.npz` for model.pretrained_npz.

    pip install torch   # CPU build is enough; or pip install -e '.[torch]'
    python -m cmnet_jax.tools.convert_resnet18 --pth resnet18-f37072fd.pth --out resnet18.npz
    python run.py --config=configs/casme2.py --config.data.root=/data/CASME2 \\
        --config.model.pretrained_npz=resnet18.npz

The `.pth` is one you already have: torchvision's ImageNet weights
(`torchvision.models.ResNet18_Weights.IMAGENET1K_V1`, file `resnet18-f37072fd.pth`) or any
`state_dict()` of a torchvision `resnet18` (e.g. fine-tuned on faces; a `module.` prefix from
DataParallel and a `{'state_dict': ...}` wrapper are accepted). The `.npz` keeps torchvision's key
names and layouts (`conv1.weight [64, 3, 7, 7]`, ...); `cmnet_jax.models.load_resnet18_npz` does
the transposes when it loads it. Every key our encoder needs is checked (name and shape) here, so
a wrong file fails now, with its name, rather than at the start of training.

PyTorch is only needed to read the `.pth` (imported here, nowhere else in cmnet_jax).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

IMAGENET_WIDTHS = (64, 128, 256, 512)


class ConversionError(ValueError):
  """The input is not a torchvision ResNet-18 state dict (message names the file and key)."""


def expected_shapes(widths: Sequence[int] = IMAGENET_WIDTHS) -> dict[str, tuple[int, ...]]:
  """Every torchvision key `load_resnet18_npz` reads, with its shape, for these stage widths.

  >>> shapes = expected_shapes()
  >>> len(shapes), shapes['conv1.weight'], shapes['layer2.0.downsample.0.weight']
  (60, (64, 3, 7, 7), (128, 64, 1, 1))
  """
  shapes = {"conv1.weight": (widths[0], 3, 7, 7), "bn1.weight": (widths[0],),
            "bn1.bias": (widths[0],)}
  c_in = widths[0]
  for layer, w in enumerate(widths, start=1):
    for block in range(2):
      p = f"layer{layer}.{block}"
      shapes[f"{p}.conv1.weight"] = (w, c_in if block == 0 else w, 3, 3)
      shapes[f"{p}.conv2.weight"] = (w, w, 3, 3)
      for bn in ("bn1", "bn2"):
        shapes[f"{p}.{bn}.weight"] = shapes[f"{p}.{bn}.bias"] = (w,)
      if block == 0 and layer > 1:
        shapes[f"{p}.downsample.0.weight"] = (w, c_in, 1, 1)
        shapes[f"{p}.downsample.1.weight"] = shapes[f"{p}.downsample.1.bias"] = (w,)
    c_in = w
  return shapes


def _array(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def convert_state_dict(state: Mapping[str, Any], *, widths: Sequence[int] = IMAGENET_WIDTHS,
                       source: str = "state dict") -> dict[str, np.ndarray]:
  """torchvision ResNet-18 state dict (tensors or arrays) -> `{torchvision key: np.ndarray}`.

  Unwraps `{'state_dict': ...}`, strips a `module.` prefix, keeps every key (the loader ignores
  `fc.*` and the BatchNorm running statistics), stores float tensors as float32, and checks the
  keys and shapes the loader needs.

  Raises:
    ConversionError naming `source` and every missing key or wrong shape.
  """
  if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
    state = state["state_dict"]
  if not isinstance(state, Mapping):
    raise ConversionError(f"{source}: expected a state dict (key -> tensor), got "
                          f"{type(state).__name__}; save model.state_dict(), not the model")
  out = {}
  for key, value in state.items():
    name = key[len("module."):] if key.startswith("module.") else key
    array = _array(value)
    out[name] = array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array
  problems = []
  for key, shape in expected_shapes(widths).items():
    if key not in out:
      problems.append(f"missing key {key!r} {shape}")
    elif tuple(out[key].shape) != shape:
      problems.append(f"key {key!r} has shape {tuple(out[key].shape)}, expected {shape}")
  if problems:
    raise ConversionError(f"{source}: not a torchvision ResNet-18 with stage widths "
                          f"{tuple(widths)}: " + "; ".join(problems[:5]) +
                          (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""))
  return out


def read_pth(path: str | os.PathLike) -> Mapping[str, Any]:
  """The state dict in a `.pth` file (needs PyTorch; weights only, nothing is executed)."""
  if not os.path.isfile(path):
    raise ConversionError(f"{path}: no such file (--pth: the torchvision ResNet-18 .pth)")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError("reading a .pth file needs PyTorch, which is not installed: "
                          "pip install torch (the CPU build is enough), or "
                          "pip install -e '.[torch]' in the cmnet_jax checkout") from None
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  (any unreadable file: say which)
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # torch colours its messages
    first = text.splitlines()[0][:160] if text else type(e).__name__
    raise ConversionError(f"{path}: cannot read as a PyTorch state dict ({first}); a whole "
                          "pickled model is not read: save model.state_dict()") from e


def write_npz(arrays: Mapping[str, np.ndarray], out: str | os.PathLike) -> Path:
  """Writes `out` atomically (a temporary file beside it, then a rename)."""
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(out.name + f".tmp{os.getpid()}.npz")
  try:
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
  finally:
    tmp.unlink(missing_ok=True)
  return out


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m cmnet_jax.tools.convert_resnet18",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--pth", required=True, help="torchvision ResNet-18 state dict (.pth)")
  parser.add_argument("--out", required=True, help="the .npz to write (model.pretrained_npz)")
  args = parser.parse_args(argv)
  try:
    arrays = convert_state_dict(read_pth(args.pth), source=args.pth)
    out = write_npz(arrays, args.out)
  except (ConversionError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {out} ({len(arrays)} arrays); use it with "
        f"--config.model.pretrained_npz={out} (model.encoder='resnet18')")
  return 0


if __name__ == "__main__":
  sys.exit(main())
