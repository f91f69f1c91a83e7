"""Convolutions on CPU through oneDNN's kernels (`model.conv_impl='onednn'`), as XLA custom calls.

`conv` is a drop-in `lax.conv_general_dilated` for `flax.linen.Conv`, like `im2col_conv`: NHWC
activations, HWIO kernels, float32; its forward pass and both gradients are oneDNN's
convolution primitives (the library PyTorch runs on CPU), called from the compiled program
through XLA's FFI. Anything else (bfloat16, dilations, feature groups) goes to `im2col_conv`.
Under `vmap` (folds side by side) the call runs once per fold.

Opt-in, CPU only. It needs `pip install -r requirements-cpu.txt` (oneDNN 3.2's library and
headers from PyPI) and a C++ compiler (`$CXX`, else `g++`): on first use `onednn_conv.cc`, next
to this file, is compiled against those headers and the XLA FFI headers that jaxlib ships (about
5 s), and the library is cached in `$CMNET_JAX_CACHE` (default `~/.cache/cmnet_jax`), keyed by
the source, jaxlib's and oneDNN's versions, and loaded only if it, its recorded sha256 and the
folder are this user's and no one else may write them (`_build`). `unavailable()` says what is
missing.

Why: XLA:CPU (jaxlib 0.10.2) has no fast float32 convolution gradient (docs/benchmarks.md):
forward + both gradients of all of one encoder pass's convolutions (72 frames) took 1.88x less
time here than with `im2col_conv` on ResNet-18 and 2.23x on small_cnn (`python -m
benchmarks.conv_layers`); the training step against a PyTorch implementation of it went from
0.48-0.53x to 1.10-1.14x on ResNet-18.

>>> import numpy as np
>>> if unavailable() is None:  # the doctest runs where the library can be built
...   x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype(np.float32)
...   w = np.random.default_rng(1).normal(size=(3, 3, 3, 4)).astype(np.float32)
...   dn = ("NHWC", "HWIO", "NHWC")
...   ref = jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)
...   got = conv(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)
...   assert np.allclose(ref, got, atol=1e-4), "oneDNN convolution differs from XLA's"
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from cmnet_jax.models.convolution import im2col_conv, plain_conv

SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
TARGETS = {"forward": "CmnetOnednnConvForward",
           "backward_data": "CmnetOnednnConvBackwardData",
           "backward_weights": "CmnetOnednnConvBackwardWeights"}
_INSTALL = "pip install -r requirements-cpu.txt"


class OnednnUnavailable(RuntimeError):
  """model.conv_impl='onednn' cannot be used here; the message says what is missing."""


def _prefixes() -> list[pathlib.Path]:
  seen = []
  for p in (sysconfig.get_paths()["data"], sys.prefix, sys.base_prefix, "/usr/local", "/usr"):
    p = pathlib.Path(p)
    if p not in seen:
      seen.append(p)
  return seen


def _find() -> tuple[pathlib.Path, pathlib.Path, pathlib.Path, str]:
  """(oneDNN include dir, oneDNN lib dir, XLA FFI include dir, compiler) or OnednnUnavailable."""
  onednn_inc = next((p / "include" for p in _prefixes()
                     if (p / "include" / "oneapi" / "dnnl" / "dnnl.hpp").is_file()), None)
  onednn_lib = next((p / "lib" for p in _prefixes()
                     if any((p / "lib").glob("libdnnl.so*"))), None)
  import jaxlib  # pylint: disable=g-import-not-at-top
  ffi_inc = pathlib.Path(jaxlib.__file__).parent / "include"
  cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  missing = []
  if onednn_inc is None:
    missing.append(f"oneDNN's headers (oneapi/dnnl/dnnl.hpp under {_prefixes()[0]}/include)")
  if onednn_lib is None:
    missing.append(f"oneDNN's library (libdnnl.so under {_prefixes()[0]}/lib)")
  if not (ffi_inc / "xla" / "ffi" / "api" / "ffi.h").is_file():
    missing.append(f"the XLA FFI headers of jaxlib (xla/ffi/api/ffi.h under {ffi_inc})")
  if not cxx:
    missing.append("a C++ compiler ($CXX, g++ or c++ on PATH)")
  if missing:
    raise OnednnUnavailable(
        "model.conv_impl='onednn' needs " + "; ".join(missing) +
        f". Install oneDNN with `{_INSTALL}`, or use model.conv_impl='auto' (im2col on CPU).")
  return onednn_inc, onednn_lib, ffi_inc, cxx


def _cache_dir() -> pathlib.Path:
  root = os.environ.get("CMNET_JAX_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cmnet_jax")
  return pathlib.Path(root)


def _umask() -> int:
  from cmnet_jax.reports import files  # pylint: disable=g-import-not-at-top
  return files.umask()


def _private_folder(folder: pathlib.Path) -> None:
  """Makes the cache folder (0o700) or checks that it is this user's and no one else may write
  there; OnednnUnavailable otherwise (another user could put a library there that this process
  would load and run)."""
  folder.mkdir(mode=0o700, parents=True, exist_ok=True)
  st = folder.stat()
  why = ("does not belong to this user (uid {0}, it is uid {1})".format(os.geteuid(), st.st_uid)
         if st.st_uid != os.geteuid() else
         f"may be written by other users (mode {stat.S_IMODE(st.st_mode):#o})"
         if st.st_mode & 0o022 else "")
  if why:
    raise OnednnUnavailable(
        f"model.conv_impl='onednn': the cache folder {folder} {why}, so a library found there "
        "could be someone else's code run in this process; nothing was loaded. Set "
        "CMNET_JAX_CACHE to a folder only you may write (or chmod go-w it), or use "
        "model.conv_impl='auto'.")


def _untrusted(library: pathlib.Path, digest: pathlib.Path) -> str:
  """Why the cached `library` must not be loaded ('' = it is this user's, written by no one
  else, and has the sha256 recorded when it was built)."""
  for path in (library, digest):
    try:
      st = os.lstat(path)
    except FileNotFoundError:
      return f"{path.name} is missing"
    if not stat.S_ISREG(st.st_mode):
      return f"{path.name} is not a regular file"
    if st.st_uid != os.geteuid():
      return f"{path.name} belongs to uid {st.st_uid}, not this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
      return f"{path.name} may be written by other users (mode {stat.S_IMODE(st.st_mode):#o})"
  if hashlib.sha256(library.read_bytes()).hexdigest() != digest.read_text().strip():
    return f"its content differs from the sha256 recorded in {digest.name} when it was built"
  return ""


def _build() -> pathlib.Path:
  """The compiled handler library, built once per source / jaxlib / oneDNN version.

  Cached in a folder of this user's that no one else may write, with the sha256 of what was
  built beside it (`<name>.so.sha256`); a cached library is loaded only if it and its digest
  are this user's, not writable by others, and match. It is compiled into a private temporary
  folder and renamed into place (digest first), so no one sees a partial file.
  """
  onednn_inc, onednn_lib, ffi_inc, cxx = _find()
  version = (onednn_inc / "oneapi" / "dnnl" / "dnnl_version.h")
  import jaxlib  # pylint: disable=g-import-not-at-top
  key = hashlib.sha256(SOURCE.read_bytes() + jaxlib.__version__.encode() +
                       (version.read_bytes() if version.is_file() else b"") +
                       str(onednn_lib).encode()).hexdigest()[:16]
  out = _cache_dir() / f"onednn_conv-{key}.so"
  digest = out.with_name(out.name + ".sha256")
  _private_folder(out.parent)
  if os.path.lexists(out):
    why = _untrusted(out, digest)
    if not why:
      return out
    warnings.warn(f"not loading the cached {out}: {why}; compiling it again", RuntimeWarning,
                  stacklevel=3)
  with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # 0o700: private until renamed
    built = pathlib.Path(tmp) / out.name
    cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{ffi_inc}", f"-I{onednn_inc}",
           str(SOURCE), f"-L{onednn_lib}", "-ldnnl", f"-Wl,-rpath,{onednn_lib}", "-o", str(built)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
      raise OnednnUnavailable(
          f"model.conv_impl='onednn': compiling {SOURCE.name} failed ({' '.join(cmd)}):\n"
          f"{res.stderr[-2000:]}")
    os.chmod(built, 0o755 & ~_umask())
    built_digest = pathlib.Path(tmp) / digest.name
    built_digest.write_text(hashlib.sha256(built.read_bytes()).hexdigest() + "\n")
    os.chmod(built_digest, 0o644 & ~_umask())
    # Atomic, digest first: concurrent first uses each build and one pair wins; a reader that
    # sees a new digest beside an old library finds them different and builds again.
    os.replace(built_digest, digest)
    os.replace(built, out)
  return out


@functools.lru_cache(maxsize=None)
def _register() -> None:
  lib = ctypes.cdll.LoadLibrary(str(_build()))
  for name in TARGETS.values():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")


def unavailable() -> str | None:
  """None when oneDNN convolutions can run here, else why not (what to install)."""
  try:
    _register()
  except (OnednnUnavailable, OSError) as e:
    return str(e)
  return None


def _call(target: str, out_shape, a, b, strides, pads):
  return jax.ffi.ffi_call(TARGETS[target], jax.ShapeDtypeStruct(out_shape, jnp.float32),
                          vmap_method="sequential")(
      a, b, sh=np.int64(strides[0]), sw=np.int64(strides[1]), ph=np.int64(pads[0]),
      pw=np.int64(pads[1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, pads, out_shape):
  return _call("forward", out_shape, x, w, strides, pads)


def _conv_fwd(x, w, strides, pads, out_shape):
  return _call("forward", out_shape, x, w, strides, pads), (x, w)


def _conv_bwd(strides, pads, out_shape, residuals, dy):
  x, w = residuals
  dx = _call("backward_data", x.shape, dy, w, strides, pads)
  dw = _call("backward_weights", w.shape, x, dy, strides, pads)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
         preferred_element_type=None):
  """`lax.conv_general_dilated` through oneDNN (float32 NHWC/HWIO; otherwise `im2col_conv`)."""
  simple = (plain_conv(lhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, batch_group_count) and
            jnp.result_type(lhs) == jnp.float32 and jnp.result_type(rhs) == jnp.float32 and
            preferred_element_type in (None, jnp.float32) and
            all(int(p) >= 0 for pair in padding for p in pair))
  if not simple:
    return im2col_conv(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                       dimension_numbers, feature_group_count, batch_group_count, precision,
                       preferred_element_type)
  _register()
  strides = tuple(int(s) for s in window_strides)
  (pt, pb), (pl, pr) = ((int(a), int(b)) for a, b in padding)
  kh, kw = rhs.shape[:2]
  n, h, w = lhs.shape[:3]
  oh, ow = (h + pt + pb - kh) // strides[0] + 1, (w + pl + pr - kw) // strides[1] + 1
  return _conv(lhs, rhs, strides, (pt, pl), (n, oh, ow, rhs.shape[3]))
