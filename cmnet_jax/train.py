"""Leave-one-subject-out training and evaluation: `train_and_evaluate(config, workdir)`.

One model per held-out subject. The folds train side by side (see `cmnet_jax.parallel`); each
fold's randomness comes from `fold_in(seed, fold_id)`, so a fold's result does not depend on how
many devices share the work. Evaluation uses the final epoch's model on the held-out subject;
an 'oracle best-epoch' figure (test-set selection, as much published MER code does) is written
beside it only when `train.eval_every_epochs > 0`, and always labelled so.

Outputs in `workdir`: `checkpoints/`, `folds/` (per fold-group results, the unit of multi-host
merging and of resuming a finished group), and the reports written by `cmnet_jax.reports`.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cmnet_jax import checkpoint
from cmnet_jax import input_pipeline
from cmnet_jax import models
from cmnet_jax import parallel
from cmnet_jax import reports
from cmnet_jax import results as results_lib
from cmnet_jax import train_step as ts


class RunError(ValueError):
  """A run cannot go on as configured (message says what to change)."""


class NonFiniteLossError(FloatingPointError):
  """A fold's loss became NaN or infinite; the last good checkpoint is kept."""


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Starts multi-host JAX when `train.distributed` or CMNET_DISTRIBUTED=1 asks for it.

  On TPU pods and managed clusters `jax.distributed.initialize()` finds its peers by itself.
  Elsewhere set JAX_COORDINATOR_ADDRESS (host:port of process 0), CMNET_NUM_PROCESSES and
  CMNET_PROCESS_ID in every process.
  """
  if not (config.train.distributed or os.environ.get("CMNET_DISTRIBUTED") == "1"):
    return
  if jax.distributed.is_initialized():
    return
  kwargs = {}
  if "CMNET_NUM_PROCESSES" in os.environ:
    kwargs = {"num_processes": int(os.environ["CMNET_NUM_PROCESSES"]),
              "process_id": int(os.environ["CMNET_PROCESS_ID"])}
  jax.distributed.initialize(**kwargs)


def _fold_arrays(data: input_pipeline.ClipData, fold_ids: np.ndarray) -> ts.FoldData:
  """Host FoldData for a group's slots `[slots, ...]`; padded slots (-1) get a dummy fold."""
  num_clips = len(data.labels)
  max_test = max(len(f.test_ids) for f in data.folds)
  weights = np.zeros((len(fold_ids), num_clips), np.float32)
  test_ids = np.zeros((len(fold_ids), max_test), np.int32)
  test_mask = np.zeros((len(fold_ids), max_test), bool)
  for slot, fid in enumerate(fold_ids):
    if fid < 0:
      weights[slot] = 1.0 / num_clips
      continue
    fold = data.folds[fid]
    weights[slot, list(fold.train_ids)] = 1.0 / len(fold.train_ids)
    test_ids[slot, :len(fold.test_ids)] = fold.test_ids
    test_mask[slot, :len(fold.test_ids)] = True
  return ts.FoldData(weights, test_ids, test_mask)


def _check_finite(metrics: dict[str, np.ndarray], fold_ids: np.ndarray, data, epoch: int,
                  steps_per_epoch: int) -> None:
  loss = metrics["loss"]  # [slots, steps]
  for slot, fid in enumerate(fold_ids):
    if fid < 0:
      continue
    bad = np.flatnonzero(~np.isfinite(loss[slot]))
    if bad.size:
      step = epoch * steps_per_epoch + int(bad[0])
      raise NonFiniteLossError(
          f"non-finite loss in fold {fid} (test subject {data.folds[fid].test_subject}), "
          f"epoch {epoch + 1}, step {step} (step {int(bad[0])} of that epoch); the last good "
          "checkpoint is kept in the workdir")


def _load_pretrained(state: ts.TrainState, config: ml_collections.ConfigDict) -> ts.TrainState:
  """Host state `[slots, ...]` with the configured ResNet-18 weights in every fold's encoders
  (the rest keeps its per-fold initialisation; AdamW's moments start at zero either way)."""
  slots = jax.tree.leaves(state.params)[0].shape[0]
  loaded = [models.load_pretrained(jax.tree.map(lambda x, s=s: x[s], state.params), config.model)
            for s in range(slots)]
  return state.replace(params=jax.tree.map(lambda *xs: np.stack(xs), *loaded))


def _validate(config: ml_collections.ConfigDict, data: input_pipeline.ClipData) -> None:
  smallest = min(len(f.train_ids) for f in data.folds)
  if config.train.batch_size > smallest:
    raise RunError(f"train.batch_size={config.train.batch_size} is larger than the smallest "
                     f"fold's training set ({smallest} clips); lower train.batch_size")
  if config.model.intensity_source == "oracle" and data.true_intensity is None:
    raise RunError("model.intensity_source='oracle' needs the true per-frame intensity, which "
                   f"only the synthetic generator knows; data.name is {config.data.name!r}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                       evaluate_only: bool = False) -> dict:
  """Trains every LOSO fold, evaluates each on its held-out subject, writes the reports.

  Resumes from `workdir` if it holds checkpoints or finished fold groups of the same config.
  With `evaluate_only`, nothing is trained: every fold group is evaluated again from its final
  checkpoint (an error says so if training has not finished).
  Returns the results dict (also written to `workdir/results.json`) on process 0, and an empty
  dict on the other processes of a multi-host run.
  """
  maybe_initialize_distributed(config)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  _write_config(config, workdir)
  data = input_pipeline.load(config, workdir)
  _validate(config, data)
  if jax.process_index() == 0:
    reports.atomic_write(workdir / "folds.json", json.dumps({
        "class_names": list(data.class_names),
        "test_subjects": [f.test_subject for f in data.folds]}, indent=1))
  layout = parallel.make_layout(len(data.folds), num_devices=config.train.num_devices,
                                folds_per_device=config.train.folds_per_device)
  model = models.build(config.model, len(data.class_names))
  tc = config.train
  tx = ts.make_optimizer(config.optim, tc.num_epochs * tc.steps_per_epoch)
  device_data = parallel.replicate(layout, data.device_data())
  sample = np.zeros((1,) + data.eval_frames.shape[1:], np.uint8)
  init_one = ts.make_init(model, tx, sample)
  epoch_fn = parallel.fold_parallel(ts.make_train_epoch(model, tx, config), layout,
                                    fold_args=(0, 1), donate=(0,))
  eval_fn = parallel.fold_parallel(ts.make_eval(model, config), layout, fold_args=(0, 1))
  progress = reports.Progress(layout.num_groups, tc.num_epochs)
  base_rng = jax.random.PRNGKey(tc.seed)
  for group in range(layout.num_groups):
    fold_ids = layout.local_folds(group)
    out_path = workdir / "folds" / f"group{group:03d}_process{layout.process_index:03d}.npz"
    if out_path.exists() and not evaluate_only:
      progress.skip(group)
      continue
    # A fold's randomness depends on its id only (padded slots get ids past the real folds).
    fold_rngs = np.stack([np.asarray(jax.random.fold_in(base_rng, fid if fid >= 0 else
                                                        len(data.folds) + slot))
                          for slot, fid in enumerate(fold_ids)])
    fold_data = parallel.shard_folds(layout, _fold_arrays(data, fold_ids))
    host_state = ts.init_fold_states(init_one, fold_rngs)
    if config.model.pretrained_npz:
      host_state = _load_pretrained(host_state, config)
    state = parallel.shard_folds(layout, host_state)
    # Multi-process runs resume at fold-group granularity (finished groups are skipped): Orbax
    # cannot save each process's own, process-local fold arrays (see cmnet_jax.checkpoint).
    store = (checkpoint.CheckpointStore(
        workdir / "checkpoints" / f"group{group:03d}_process{layout.process_index:03d}",
        keep=tc.checkpoints_to_keep) if checkpoint.is_supported() else None)
    history, oracle, start_epoch = {}, [], 0
    restored = store.restore_latest(parallel.unshard(state)) if store else None
    if restored is not None:
      start_epoch, host_state, extra = restored
      state = parallel.shard_folds(layout, host_state)
      history = {k: [np.asarray(v) for v in vs] for k, vs in extra["history"].items()}
      oracle = [(e, np.asarray(p)) for e, p in extra["oracle"]]
    if evaluate_only and (store is None or start_epoch != tc.num_epochs):
      raise checkpoint.CheckpointError(
          f"{store.directory}: the latest checkpoint is at epoch {start_epoch} of "
          f"{tc.num_epochs}; training has not finished (run --mode=train to resume it)")
    for epoch in range(start_epoch, tc.num_epochs):
      t0 = time.perf_counter()
      state, metrics = epoch_fn(state, fold_data, device_data)
      metrics = parallel.unshard(metrics)
      _check_finite(metrics, fold_ids, data, epoch, tc.steps_per_epoch)
      for k, v in metrics.items():
        history.setdefault(k, []).append(v.mean(axis=1))
      if tc.eval_every_epochs and (epoch + 1) % tc.eval_every_epochs == 0:
        evaluated = parallel.unshard(eval_fn(state.params, fold_data, device_data))
        oracle.append((epoch + 1, evaluated.logits.argmax(-1)))
      done = epoch + 1 == tc.num_epochs
      if store and (done or (epoch + 1) % tc.checkpoint_every_epochs == 0):
        store.save(epoch + 1, parallel.unshard(state), {
            "history": {k: [v.tolist() for v in vs] for k, vs in history.items()},
            "oracle": [(e, p.tolist()) for e, p in oracle]})
      progress.update(group, epoch + 1, float(np.mean(metrics["loss"][fold_ids >= 0])),
                      time.perf_counter() - t0)
    evaluated = parallel.unshard(eval_fn(state.params, fold_data, device_data))
    results_lib.save_group(out_path, fold_ids=fold_ids, fold_data=_fold_arrays(data, fold_ids),
                           logits=evaluated.logits, intensities=evaluated.intensities,
                           ablated_logits=evaluated.ablated_logits,
                           history={k: np.stack(v, 1) for k, v in history.items()},
                           oracle=oracle)
    if store:
      store.close()
  progress.close()
  if layout.process_index != 0:
    return {}
  groups = results_lib.wait_for_groups(workdir / "folds", layout.num_groups, layout.process_count)
  return results_lib.finish(config, workdir, data, groups)


def _write_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
  """Records the config; a resumed run must use the same one (checked, not assumed)."""
  path = workdir / "config.json"
  text = config.to_json_best_effort(sort_keys=True, indent=2)
  if path.exists():
    if json.loads(path.read_text()) != json.loads(text):
      raise RunError(f"{path} holds a different config: this workdir belongs to another run; "
                       "use a new --workdir (or delete this one) to start afresh")
    return
  reports.atomic_write(path, text)
