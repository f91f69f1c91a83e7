"""ResNet-18's stem max-pool: `nn.max_pool`'s gradient against `encoders.max_pool`'s, paired.

    python -m benchmarks.max_pool --out docs/benchmarks_max_pool.md

Times, in alternating rounds within one process (the two forms called back to back, the order
flipped every round, so that the machine's slow spells hit both), (a) the 3x3/2 max-pool's forward
+ backward alone on ResNet-18's stem output for 72 frames at 112x112 ([72, 56, 56, 64]) and (b) the
whole ResNet-18 encoder's forward + backward on 72 frames, once with `nn.max_pool` in the stem
and once with `encoders.max_pool`. Prints medians and the per-round ratio (ours / nn.max_pool:
below 1 is faster), and checks that both give the same gradient.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import vs_pytorch
from cmnet_jax.models import encoders


def flax_max_pool(x, window, stride, padding):
  return nn.max_pool(x, (window, window), (stride, stride), ((padding, padding),) * 2)


def paired(fns: dict, args, rounds: int) -> dict:
  """{name: [seconds per round]}, the calls alternating (order flipped every round)."""
  for f in fns.values():
    jax.block_until_ready(f(*args))
  times = {k: [] for k in fns}
  for r in range(rounds):
    for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
      t0 = time.perf_counter()
      jax.block_until_ready(fns[name](*args))
      times[name].append(time.perf_counter() - t0)
  return times


def row(label: str, times: dict) -> str:
  old, new = np.array(times["nn.max_pool"]), np.array(times["encoders.max_pool"])
  r = new / old
  return (f"| {label} | {np.median(old) * 1e3:.0f} | {np.median(new) * 1e3:.0f} | "
          f"{np.median(r):.3f} ({np.percentile(r, 25):.3f}-{np.percentile(r, 75):.3f}) |")


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--frames", type=int, default=72)
  ap.add_argument("--size", type=int, default=112)
  ap.add_argument("--rounds", type=int, default=16)
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  rng = np.random.default_rng(0)
  lines = ["# ResNet-18 stem max-pool: `nn.max_pool` vs `encoders.max_pool`", "",
           f"- Machine: {vs_pytorch.cpu_model()}, {os.cpu_count()} cores, "
           f"{jax.devices()[0].platform}; {vs_pytorch.versions()}",
           f"- Command: `python -m benchmarks.max_pool {' '.join(sys.argv[1:])}`",
           f"- Load before: `{os.popen('uptime').read().strip()}`",
           f"- {args.rounds} alternating rounds; ratio = encoders.max_pool / nn.max_pool per round, "
           "median (interquartile range).", "",
           "| what (forward + backward) | nn.max_pool ms | encoders.max_pool ms | ratio |",
           "|---|---|---|---|"]
  pooled = args.size // 4
  y = jnp.asarray(rng.normal(size=(args.frames, 2 * pooled, 2 * pooled, 64)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=(args.frames, pooled, pooled, 64)), jnp.float32)
  pool_grad = {name: jax.jit(lambda y, dy, f=f: jax.vjp(lambda y: f(y, 3, 2, 1), y)[1](dy)[0])
               for name, f in [("nn.max_pool", flax_max_pool),
                               ("encoders.max_pool", encoders.max_pool)]}
  got, ref = pool_grad["encoders.max_pool"](y, dy), pool_grad["nn.max_pool"](y, dy)
  assert float(jnp.max(jnp.abs(got - ref))) < 1e-5, "the two pool gradients differ"
  lines.append(row(f"max-pool 3x3/2 alone, [{args.frames}, {2 * pooled}, {2 * pooled}, 64]",
                   paired(pool_grad, (y, dy), args.rounds)))
  print("\n".join(lines), flush=True)

  enc = encoders.ResNet18((64, 128, 256, 512), 512, 32, conv_impl="auto")
  x = jnp.asarray(rng.normal(size=(args.frames, args.size, args.size, 3)), jnp.float32)
  v = jax.jit(enc.init)(jax.random.key(0), x[:1])
  grads = {}
  ours = encoders.max_pool
  try:
    for name, f in [("nn.max_pool", flax_max_pool), ("encoders.max_pool", ours)]:
      encoders.max_pool = f  # the stem looks the function up when traced
      grads[name] = jax.jit(jax.grad(lambda v, x: jnp.sum(enc.apply(v, x) ** 2))).lower(
          v, x).compile()
  finally:
    encoders.max_pool = ours
  a, b = grads["nn.max_pool"](v, x), grads["encoders.max_pool"](v, x)
  rel = max(float(jnp.max(jnp.abs(p - q)) / jnp.max(jnp.abs(p)))
            for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  lines.append(row(f"ResNet-18 encoder, {args.frames} frames of {args.size}x{args.size}",
                   paired(grads, (v, x), args.rounds)))
  lines += ["", f"Largest relative difference between the two encoder gradients: {rel:.1e}.",
            f"Load after: `{os.popen('uptime').read().strip()}`"]
  print("\n".join(lines[-4:]), flush=True)
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
