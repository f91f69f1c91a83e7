"""Where one training step's time goes: its parts timed one by one, cmnet_jax and PyTorch.

    python -m benchmarks.step_parts --networks small,resnet18 --out docs/benchmarks_step_parts.md
    python -m benchmarks.step_parts --torch-python PY --torch-reference torch_cmnet.py ...

Each part is compiled on its own (`jax.jit`) and timed after a warm-up, median of `--repeats`
calls, on the shapes of `benchmarks.vs_pytorch` (batch 8 clips of 9 frames; small_cnn at 64x64 or
ResNet-18 at 112x112; `vs_pytorch`'s 'step' configuration). The parts overlap in the real step
(XLA runs independent operations side by side on the cores), so they do not add up to the step.

With `--torch-reference` (a PyTorch implementation of the same network and step, not part of
this repository) and `--torch-python`, the same parts of the reference are timed the same way in
a subprocess: its photometric augmentation, one encoder's forward + backward, and its whole
training step.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import vs_pytorch
from cmnet_jax import augment, models
from cmnet_jax import train_step as ts
from cmnet_jax.models.encoders import ENCODERS

FRAMES = vs_pytorch.BATCH * vs_pytorch.FRAMES  # 72 frames per encoder pass

TORCH_PARTS = r"""
import importlib.util, json, statistics, sys, time
import torch
spec = importlib.util.spec_from_file_location('ref', sys.argv[1])
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
encoder, size, repeats, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
def timed(f):
  f(); t = []
  for _ in range(repeats):
    t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
  return statistics.median(t)
out = {}
x72 = torch.rand(72, 3, size, size)
out['views'] = timed(lambda: ref.photometric_augment(x72))
enc = ref.ENCODERS[encoder][0]()
for n in (72, 144):
  x = torch.randn(n, 3, size, size)
  def fb():
    enc.zero_grad(); enc(x).pow(2).sum().backward()
  out[f'encoder{n}'] = timed(fb)
class A: pass
a = A(); a.encoder, a.num_classes, a.frames, a.image_size, a.batch = encoder, 5, 9, size, 8
model = ref.make_model(a)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
data, labels = ref.random_data(a, 64)
proto = ref.prototype(9)
idx = torch.arange(8)
out['step'] = timed(lambda: ref.train_step(model, opt, data[idx], labels[idx], proto))
print(json.dumps({'torch': torch.__version__, **out}))
"""


def timed(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def jax_parts(network: str, repeats: int) -> dict:
  from benchmarks.training import make_inputs  # pylint: disable=g-import-not-at-top
  c = vs_pytorch.make_config(network, "step", 1)
  size = c.data.image_size
  model = models.build(c.model, vs_pytorch.CLASSES)
  rng = np.random.default_rng(0)
  clips = jnp.asarray(rng.integers(0, 256, (vs_pytorch.BATCH, vs_pytorch.FRAMES, size, size, 3),
                                   dtype=np.uint8))
  key = jax.random.PRNGKey(1)
  params = jax.jit(model.init)({"params": key, "dropout": key}, clips[:1])["params"]
  labels = jnp.zeros((vs_pytorch.BATCH,), jnp.int32)
  apex = jnp.full((vs_pytorch.BATCH,), vs_pytorch.FRAMES // 2, jnp.int32)
  out = {}
  out["clip_augment"] = timed(jax.jit(lambda k, x: augment.clip_augment(k, x, c.augment)),
                              key, clips, repeats=repeats)
  aug = jax.jit(lambda k, x: augment.clip_augment(k, x, c.augment))(key, clips)
  out["views"] = timed(jax.jit(lambda k, x: augment.positive_views(k, x, c.augment)), key, aug,
                       repeats=repeats)
  out["views_onset"] = timed(
      jax.jit(lambda k, x: augment.positive_views_with_onset(k, x, c.augment)), key, aug,
      repeats=repeats)
  enc = ENCODERS[c.model.encoder](tuple(c.model.widths), c.model.feature_dim,
                                  c.model.norm_groups, jnp.float32, c.model.conv_impl, 1)
  for n in (FRAMES, 2 * FRAMES):
    x = jnp.asarray(rng.normal(size=(n, size, size, 3)), jnp.float32)
    v = jax.jit(enc.init)(key, x[:1])
    grad = jax.jit(jax.grad(lambda v, x: jnp.sum(enc.apply(v, x) ** 2)))
    out[f"encoder{n}"] = timed(grad, v, x, repeats=repeats)
    if n == FRAMES:
      out["encoder72_fwd"] = timed(jax.jit(enc.apply), v, x, repeats=repeats)
  for fuse in (False, True):
    loss = jax.jit(jax.value_and_grad(ts.make_loss_fn(model, c, fuse_positives=fuse),
                                      has_aux=True))
    out[f"loss_grad_fused{int(fuse)}"] = timed(loss, params, aug, labels, apex, key,
                                               repeats=repeats)
  tx = ts.make_optimizer(c.optim, 100)
  state = ts.make_init(model, tx, np.zeros((1, vs_pytorch.FRAMES, size, size, 3), np.uint8))(key)
  grads = jax.tree.map(jnp.ones_like, state.params)
  out["optimizer"] = timed(jax.jit(lambda g, s, p: tx.update(g, s, p)), grads, state.opt_state,
                           state.params, repeats=repeats)
  steps = 4
  c.train.steps_per_epoch = steps
  data, folds = make_inputs(c, 1, 64, np.random.default_rng(0))
  epoch = jax.jit(ts.make_train_epoch(model, tx, c))
  fold = jax.tree.map(lambda x: x[0], folds)
  out["step"] = timed(epoch, state, fold, jax.device_put(data), repeats=repeats) / steps
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--networks", default="small,resnet18")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--torch-python", default="", help="a Python with torch installed")
  ap.add_argument("--torch-reference", default="",
                  help="the PyTorch implementation of the same network and step (a script)")
  ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  lines = ["# One training step, part by part", "",
           f"- Machine: {vs_pytorch.cpu_model()}, {os.cpu_count()} cores; cmnet_jax: "
           f"{vs_pytorch.versions()}",
           f"- Command: `python -m benchmarks.step_parts {' '.join(sys.argv[1:])}`",
           f"- Load before: `{os.popen('uptime').read().strip()}`",
           f"- Medians of {args.repeats} calls after a warm-up, ms; batch 8 clips of 9 frames "
           "(72 frames per encoder pass).", ""]
  print("\n".join(lines), flush=True)
  for network in args.networks.split(","):
    _, size, _, _, ref_encoder = vs_pytorch.NETWORKS[network]
    j = jax_parts(network, args.repeats)
    t = {}
    if args.torch_reference:
      res = subprocess.run([args.torch_python, "-c", TORCH_PARTS, args.torch_reference,
                            ref_encoder, str(size), str(args.repeats), str(args.threads)],
                           check=True, capture_output=True, text=True)
      t = json.loads(res.stdout.strip().splitlines()[-1])
    ms = lambda d, k: f"{d[k] * 1e3:.0f}" if k in d else "-"  # noqa: E731
    ratio = lambda a, b: f"{t[b] / j[a]:.2f}x" if b in t else "-"  # noqa: E731
    rows = [
        ("clip augmentation (crop, flip, rotation), 8 clips", "clip_augment", None),
        ("positive views of 72 frames", "views", "views"),
        ("positive views + onset references, one pass (cmnet_jax step)", "views_onset", None),
        ("one encoder, forward only, 72 frames", "encoder72_fwd", None),
        ("one encoder, forward + backward, 72 frames", "encoder72", "encoder72"),
        ("one encoder, forward + backward, 144 frames (ICE on clips + views in one call)",
         "encoder144", "encoder144"),
        ("loss + gradient, ICE passes separate (CPU default)", "loss_grad_fused0", None),
        ("loss + gradient, ICE clips + views in one call", "loss_grad_fused1", None),
        ("AdamW update (with clipping)", "optimizer", None),
        ("whole training step (sampling, augmentation, loss, gradient, update)", "step", "step"),
    ]
    lines += [f"## {network} ({size}x{size})", "",
              f"| part | cmnet_jax ms | PyTorch ms{' (torch ' + t['torch'] + ')' if t else ''} "
              "| cmnet_jax speed vs PyTorch |", "|---|---|---|---|"]
    lines += [f"| {label} | {ms(j, a)} | {ms(t, b) if b else '-'} | "
              f"{ratio(a, b) if b else '-'} |" for label, a, b in rows]
    lines.append("")
    print("\n".join(lines[-len(rows) - 5:]), flush=True)
  lines.append(f"Load after: `{os.popen('uptime').read().strip()}`")
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
