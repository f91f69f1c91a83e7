"""Import ImageNet/FER-pretrained ResNet-18 weights saved as `.npz` with torchvision key names.

The file holds torchvision's `state_dict` as arrays (`np.savez(path, **{k: v.numpy() ...})`):
`conv1.weight [64, 3, 7, 7]`, `bn1.weight`, `bn1.bias`, `layer1.0.conv1.weight`, ...,
`layer2.0.downsample.0.weight`, `layer2.0.downsample.1.weight`, ... Mapping to our `ResNet18`:

- convolution `[out, in, kh, kw]` -> Flax kernel `[kh, kw, in, out]`;
- BatchNorm `weight`/`bias` -> GroupNorm `scale`/`bias`. Running statistics are not used (our
  encoders use GroupNorm, which has none) and `fc.*` is ignored (CMNet has its own heads);
- when the first convolution takes k x 3 channels (`input_mode='both'`: raw + difference), the
  pretrained `conv1` filters are repeated for each group of 3 channels.
"""
from __future__ import annotations

import os
import zipfile
from typing import Any, Mapping

import numpy as np

_PARTS = ("ice", "ffe")
_NORM_LEAF = {"scale": "weight", "bias": "bias"}


def _torch_name(path: tuple[str, ...]) -> str | None:
  """Flax path inside a ResNet18 -> torchvision key (None for our own `head`)."""
  if path[0] == "head":
    return None
  prefix, rest = ([path[0].replace("_", ".")], path[1:]) if path[0].startswith("layer") else (
      [], path)
  module, leaf = rest
  if module == "downsample_conv":
    return ".".join(prefix + ["downsample.0.weight"])
  if module == "downsample_norm":
    return ".".join(prefix + ["downsample.1", _NORM_LEAF[leaf]])
  if module.startswith("conv"):
    return ".".join(prefix + [module, "weight"])
  if module.startswith("norm"):
    return ".".join(prefix + ["bn" + module[len("norm"):], _NORM_LEAF[leaf]])
  raise ValueError(f"unexpected ResNet18 parameter {'/'.join(path)}")


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, v in flat.items():
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return out


def _convert(path: tuple[str, ...], target: Any, source: np.ndarray, key: str, file: str) -> Any:
  """One torchvision array -> the Flax leaf `target` (same dtype and shape), or a clear error."""
  target_shape = tuple(np.shape(target))
  if path[-1] == "kernel":
    kh, kw, c_in, c_out = target_shape
    expected = (c_out, 3 if path[-2] == "conv1" and path[0] == "conv1" else c_in, kh, kw)
    if tuple(source.shape) != expected:
      raise ValueError(f"{file}: key {key!r} has shape {tuple(source.shape)}, expected "
                       f"{expected} (torchvision [out, in, kh, kw])")
    value = np.transpose(source, (2, 3, 1, 0))
    if value.shape[2] != c_in:
      if c_in % value.shape[2]:
        raise ValueError(f"{file}: key {key!r}: cannot spread 3 input channels over {c_in}")
      value = np.tile(value, (1, 1, c_in // value.shape[2], 1))
  else:
    value = source
    if tuple(value.shape) != target_shape:
      raise ValueError(f"{file}: key {key!r} has shape {tuple(value.shape)}, expected "
                       f"{target_shape}")
  return np.asarray(value, dtype=np.asarray(target).dtype)


# Largest |value| accepted in a weight array: trained ResNet-18 weights are of order 1 (torchvision's
# ImageNet weights stay below 10); 1e30 is a damaged or wrongly converted file.
MAX_ABS = 1e4


def _array_problem(key: str, a: np.ndarray) -> str:
  """Why one weight array cannot be used ('' if it can): real floats, finite, of sane size."""
  if a.dtype == object:
    return f"array {key!r} holds Python objects (dtype object); expected float weights"
  if np.iscomplexobj(a):
    return (f"array {key!r} is complex ({a.dtype}); expected real float weights (the imaginary "
            "part would be dropped)")
  if not np.issubdtype(a.dtype, np.floating):
    return f"array {key!r} is {a.dtype}; expected float weights"
  bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
  if bad:
    return f"array {key!r} has {bad} non-finite value{'s' * (bad > 1)} (NaN or inf) of {a.size}"
  big = float(np.max(np.abs(a), initial=0.0))
  if big > MAX_ABS:
    return (f"array {key!r} has values up to {big:.3g} in magnitude; trained weights are far "
            f"smaller (|w| <= {MAX_ABS:g} expected): a damaged or wrongly converted file")
  return ""


def _read_npz(file: str) -> Any:
  """The open NpzFile, or ValueError saying in a line what the file is instead (after
  '<file>: ')."""
  if os.path.isfile(file) and os.path.getsize(file) == 0:
    raise ValueError("the file is empty (0 bytes)")
  try:
    npz = np.load(file, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise ValueError(f"cannot be read as an .npz ({type(e).__name__}: {str(e)[:200]})") from None
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise ValueError("the file is a single NumPy array (.npy format), not an .npz of named "
                     "torchvision arrays")
  return npz


def check_npz(path: str | os.PathLike, widths: tuple[int, ...]) -> str:
  """Why the file `path` cannot give a ResNet-18 with stage `widths` its weights, in one line
  ('' if it can): not an .npz, a missing key, a wrong shape, non-float, complex, non-finite or
  absurd values; every array the loader reads is checked. Run before any work (config
  validation, which names the file).
  """
  from cmnet_jax.tools import convert_resnet18  # pylint: disable=g-import-not-at-top
  file = os.fspath(path)
  try:
    npz = _read_npz(file)
  except ValueError as e:
    return str(e)
  try:
    with npz:
      for key, shape in convert_resnet18.expected_shapes(tuple(widths)).items():
        if key not in npz.files:
          return f"missing array {key!r} (a torchvision ResNet-18 key)"
        try:
          a = npz[key]
        except ValueError as e:  # an object array without allow_pickle
          return f"array {key!r} cannot be read ({str(e)[:120]}); expected float weights"
        if tuple(a.shape) != shape:
          return (f"array {key!r} has shape {tuple(a.shape)}, expected {shape} "
                  f"(torchvision [out, in, kh, kw] for model.widths={tuple(widths)})")
        problem = _array_problem(key, a)
        if problem:
          return problem
  except (OSError, EOFError, zipfile.BadZipFile) as e:  # a damaged member
    return f"the file is damaged ({type(e).__name__}: {str(e)[:200]})"
  return ""


def load_resnet18_npz(params: Mapping[str, Any], path: str | os.PathLike, *,
                      into: str) -> dict[str, Any]:
  """Returns a copy of CMNet `params` with ICE and/or FFE set from a torchvision ResNet-18 `.npz`.

  Args:
    params: CMNet parameters (`variables['params']`) built with `encoder='resnet18'`.
    path: the `.npz` file (torchvision key names, see the module docstring).
    into: 'ice' | 'ffe' | 'both'.

  Returns:
    New params (nested dicts); other parameters are untouched.

  Raises:
    ValueError: unknown `into`, params without ResNet18 encoders, a missing key or a shape that
      does not match (the message names the file and the key).
  """
  if into not in ("ice", "ffe", "both"):
    raise ValueError(f"model.pretrained_into: expected 'ice', 'ffe' or 'both', got {into!r}")
  parts = _PARTS if into == "both" else (into,)
  file = os.fspath(path)
  try:
    npz = _read_npz(file)
  except ValueError as e:
    raise ValueError(f"{file}: {e}") from None
  with npz:
    try:
      arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      raise ValueError(f"{file}: cannot read as .npz ({e})") from e
  out = _unflatten(_flatten(params))
  for part in parts:
    if part not in out or "layer1_0" not in out[part]:
      raise ValueError(f"params[{part!r}] is not a ResNet18 encoder (model.encoder must be "
                       "'resnet18' to load pretrained weights)")
    flat = _flatten(out[part])
    for p, target in flat.items():
      key = _torch_name(p)
      if key is None:
        continue
      if key not in arrays:
        raise ValueError(f"{file}: missing key {key!r} (needed for {part}/{'/'.join(p)})")
      problem = _array_problem(key, np.asarray(arrays[key]))
      if problem:
        raise ValueError(f"{file}: {problem}")
      flat[p] = _convert(p, target, np.asarray(arrays[key]), key, file)
    out[part] = _unflatten(flat)
  return out


def load_pretrained(params: Mapping[str, Any], model_config: Any) -> Mapping[str, Any]:
  """Applies `model.pretrained_npz` / `model.pretrained_into`: params unchanged when the path
  is empty, else `load_resnet18_npz(params, path, into=pretrained_into)`."""
  path = model_config["pretrained_npz"]
  if not path:
    return params
  return load_resnet18_npz(params, path, into=model_config["pretrained_into"])
