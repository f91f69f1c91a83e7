"""Benchmark of the CMNet losses on this machine's CPU (issue 2, section 4).

  python -m benchmarks.losses --out docs/benchmarks_losses.md      # full table, a few minutes
  python -m benchmarks.losses --quick                              # smoke run, seconds

For T in {9, 64, 256, 1024} and batch in {1, 32, 256}: median wall time of a jitted
forward+backward (`jax.value_and_grad` of the summed loss) of `wilcoxon_loss` (pairwise O(T^2)
form, and the chunked form for T >= 256) and of `intensity_distillation_loss` (every other frame
a negative, D = 64), the time of a Python loop over `scipy.stats.ranksums` (forward only) on the
same data, and XLA's scratch memory for each compiled program (`memory_analysis()`; peak memory
is about scratch + arguments + outputs, and the arguments are small here).
"""
import argparse
import statistics
import time
from typing import Callable, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from cmnet_jax import losses

EMBEDDING_DIM = 64
CHUNK_SIZE = 128
MAX_SCRATCH_BYTES = 6 * 2 ** 30  # programs needing more are compiled and measured, not run


def _median_seconds(fn: Callable[[], object], min_reps: int, budget_s: float) -> float:
  jax.block_until_ready(fn())  # compile and warm up
  times: List[float] = []
  while len(times) < min_reps or (sum(times) < budget_s and len(times) < 50):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _scratch_bytes(jitted, *args) -> int:
  return int(jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes)


def _time_jitted(jitted, args, min_reps, budget_s):
  scratch = _scratch_bytes(jitted, *args)
  if scratch > MAX_SCRATCH_BYTES:
    return float("nan"), scratch
  return _median_seconds(lambda: jitted(*args), min_reps, budget_s), scratch


def _wilcoxon_step(chunk_size):
  def total(s, v):
    return losses.wilcoxon_loss(s, v, margin=0.05, temperature=0.1, chunk_size=chunk_size).sum()
  return jax.jit(jax.value_and_grad(total))


def _id_step():
  def total(a, p, mask):
    return losses.intensity_distillation_loss(a, p, a, mask, temperature=0.1).sum()
  return jax.jit(jax.value_and_grad(total, argnums=(0, 1)))


def run(frames: Sequence[int], batches: Sequence[int], min_reps: int, budget_s: float):
  rows = []
  wilcoxon_pairwise, wilcoxon_chunked, id_step = _wilcoxon_step(None), _wilcoxon_step(CHUNK_SIZE), _id_step()
  for num_frames in frames:
    for batch in batches:
      key = jax.random.key(num_frames * 1000 + batch)
      k1, k2, k3 = jax.random.split(key, 3)
      mean, std = losses.intensity_prototype(num_frames, num_frames // 2)
      v = losses.sample_prototype(k1, mean, std, (batch, num_frames))
      s = jax.random.normal(k2, (batch, num_frames))
      row = {"T": num_frames, "batch": batch}
      row["w_s"], row["w_mem"] = _time_jitted(wilcoxon_pairwise, (s, v), min_reps, budget_s)
      if num_frames >= 256:
        row["wc_s"], row["wc_mem"] = _time_jitted(wilcoxon_chunked, (s, v), min_reps, budget_s)
      anchors = jax.random.normal(k3, (batch, num_frames, EMBEDDING_DIM))
      positives = anchors + 0.1
      mask = losses.sample_negatives(k3, jnp.zeros((batch, num_frames, num_frames)), strategy="all")
      row["id_s"], row["id_mem"] = _time_jitted(id_step, (anchors, positives, mask), min_reps, budget_s)
      s_np, v_np = np.asarray(s, np.float64), np.asarray(v, np.float64)
      row["scipy_s"] = _median_seconds(
          lambda: [stats.ranksums(s_np[b], v_np[b]) for b in range(batch)], min_reps, budget_s)
      rows.append(row)
      print(_format_row(row), flush=True)
  return rows


def _ms(seconds):
  return "not run" if seconds != seconds else f"{seconds * 1e3:.3g}"


def _mib(nbytes):
  return f"{nbytes / 2 ** 20:.3g}"


def _format_row(row):
  chunked = (f"{_ms(row['wc_s'])} | {_mib(row['wc_mem'])}" if "wc_s" in row else "- | -")
  return (f"| {row['T']} | {row['batch']} | {_ms(row['w_s'])} | {_mib(row['w_mem'])} | {chunked} | "
          f"{_ms(row['scipy_s'])} | {_ms(row['id_s'])} | {_mib(row['id_mem'])} |")


HEADER = ("| T | batch | Wrst fwd+bwd ms (pairwise) | Wrst scratch MiB (pairwise) | "
          f"Wrst fwd+bwd ms (chunk {CHUNK_SIZE}) | Wrst scratch MiB (chunk {CHUNK_SIZE}) | "
          "scipy ranksums loop ms (fwd only) | ID fwd+bwd ms | ID scratch MiB |\n"
          "|---|---|---|---|---|---|---|---|---|")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="T in {9, 64}, batch in {1, 32}")
  parser.add_argument("--out", default="", help="also write the Markdown table here")
  args = parser.parse_args()
  frames, batches = ((9, 64), (1, 32)) if args.quick else ((9, 64, 256, 1024), (1, 32, 256))
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
  print(HEADER)
  rows = run(frames, batches, min_reps=3, budget_s=0.5 if args.quick else 2.0)
  if args.out:
    with open(args.out, "w") as f:
      f.write(HEADER + "\n" + "\n".join(_format_row(r) for r in rows) + "\n")


if __name__ == "__main__":
  main()
