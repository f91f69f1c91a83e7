"""One convolution layer's forward + both gradients: im2col, XLA's convolution and oneDNN's.

    python -m benchmarks.conv_layers --out docs/benchmarks_conv_layers.md

For every distinct convolution of ResNet-18 at 112x112 (or small_cnn at 64x64, `--network
small`), on 72 frames (one encoder pass of a batch of 8 clips of 9 frames): the output, the input
gradient and the kernel gradient, jitted as one program per implementation (`model.conv_impl`
'im2col', 'xla', 'onednn'), timed in alternating rounds (medians), and checked against XLA's
values. The last row weights each layer by how often the encoder has it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import vs_pytorch
from cmnet_jax.models import encoders, onednn

DN = ("NHWC", "HWIO", "NHWC")
# (layer, input size, in channels, out channels, kernel, stride, padding, count in the encoder)
LAYERS = {
    "resnet18": [("stem 7x7/2", 112, 3, 64, 7, 2, 3, 1), ("layer1 3x3", 28, 64, 64, 3, 1, 1, 4),
                 ("layer2 3x3/2", 28, 64, 128, 3, 2, 1, 1), ("layer2 3x3", 14, 128, 128, 3, 1, 1, 3),
                 ("layer2 1x1/2", 28, 64, 128, 1, 2, 0, 1),
                 ("layer3 3x3/2", 14, 128, 256, 3, 2, 1, 1), ("layer3 3x3", 7, 256, 256, 3, 1, 1, 3),
                 ("layer3 1x1/2", 14, 128, 256, 1, 2, 0, 1), ("layer4 3x3/2", 7, 256, 512, 3, 2, 1, 1),
                 ("layer4 3x3", 4, 512, 512, 3, 1, 1, 3), ("layer4 1x1/2", 7, 256, 512, 1, 2, 0, 1)],
    "small": [("conv0 3x3", 64, 3, 16, 3, 1, 1, 1), ("conv1 3x3/2", 64, 16, 32, 3, 2, 1, 1),
              ("conv2 3x3/2", 32, 32, 64, 3, 2, 1, 1)],
}
IMPLS = {"im2col": encoders.im2col_conv, "xla": jax.lax.conv_general_dilated, "onednn": onednn.conv}


def layer_fn(conv, stride, pad):
  def f(x, w, dy):
    y, vjp = jax.vjp(lambda x, w: conv(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                       dimension_numbers=DN), x, w)
    return (y,) + vjp(dy)
  return jax.jit(f)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--network", default="resnet18", choices=sorted(LAYERS))
  ap.add_argument("--frames", type=int, default=72)
  ap.add_argument("--rounds", type=int, default=6)
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  why = onednn.unavailable()
  if why:
    sys.exit(why)
  lines = [f"# One convolution layer, forward + both gradients ({args.network}, {args.frames} frames)",
           "", f"- Machine: {vs_pytorch.cpu_model()}, {os.cpu_count()} cores; {vs_pytorch.versions()}",
           f"- Command: `python -m benchmarks.conv_layers {' '.join(sys.argv[1:])}`",
           f"- Load before: `{os.popen('uptime').read().strip()}`",
           f"- Medians of {args.rounds - 1} alternating rounds after a warm-up, ms.", "",
           "| layer | in the encoder | im2col | xla | onednn | onednn vs im2col | "
           "largest relative difference from xla |", "|---|---|---|---|---|---|---|"]
  print("\n".join(lines), flush=True)
  rng = np.random.default_rng(0)
  total = dict.fromkeys(IMPLS, 0.0)
  for name, size, c, o, k, s, p, count in LAYERS[args.network]:
    out = (size + 2 * p - k) // s + 1
    x = jnp.asarray(rng.normal(size=(args.frames, size, size, c)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, c, o)) / np.sqrt(k * k * c), jnp.float32)
    dy = jnp.asarray(rng.normal(size=(args.frames, out, out, o)), jnp.float32)
    fns = {impl: layer_fn(conv, s, p) for impl, conv in IMPLS.items()}
    ref = fns["xla"](x, w, dy)
    err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
              for a, b in zip(ref, fns["onednn"](x, w, dy)))
    times = {impl: [] for impl in fns}
    for r in range(args.rounds):
      for impl in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
        t0 = time.perf_counter()
        jax.block_until_ready(fns[impl](x, w, dy))
        times[impl].append(time.perf_counter() - t0)
    med = {impl: 1e3 * float(np.median(t[1:])) for impl, t in times.items()}
    for impl in total:
      total[impl] += count * med[impl]
    lines.append(f"| {name} ({c}->{o}, {size}x{size}) | x{count} | {med['im2col']:.1f} | "
                 f"{med['xla']:.1f} | {med['onednn']:.1f} | "
                 f"{med['im2col'] / med['onednn']:.2f}x | {err:.1e} |")
    print(lines[-1], flush=True)
  lines += [f"| **all convolutions of one encoder pass** | | **{total['im2col']:.0f}** | "
            f"**{total['xla']:.0f}** | **{total['onednn']:.0f}** | "
            f"**{total['im2col'] / total['onednn']:.2f}x** | |", "",
            f"Load after: `{os.popen('uptime').read().strip()}`"]
  print("\n".join(lines[-3:]), flush=True)
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
