"""Leave-one-subject-out training and evaluation: `train_and_evaluate(config, workdir)`.

One model per held-out subject. The folds train side by side (see `cmnet_jax.parallel`); each
fold's randomness comes from `fold_in(seed, fold_id)`, so a fold's result does not depend on how
many devices share the work. Evaluation uses the final epoch's model on the held-out subject;
an 'oracle best-epoch' figure (test-set selection, as much published MER code does) is written
beside it only when `train.eval_every_epochs > 0`, and always labelled so.

The workdir's files (checkpoints, per fold-group results, the config and data records, the
reports, the lock) are named and handled by `cmnet_jax.workdir`, which also says what a workdir
accepts on a second run: resume, re-print, or refuse with the keys or data that differ. The
workdir may be on Cloud Storage (`gs://...`, `cmnet_jax.storage`). A multi-process run gathers
the fold groups of every process with `jax.experimental.multihost_utils` once training is done
(`_gather`); process 0 writes the reports.
TensorBoard scalars are streamed per epoch (`reports.ScalarWriter`).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import numpy as np

from cmnet_jax import checkpoint
from cmnet_jax import config_blocks
from cmnet_jax import config_schema
from cmnet_jax import input_pipeline
from cmnet_jax import interrupt
from cmnet_jax import models
from cmnet_jax import parallel
from cmnet_jax import reports
from cmnet_jax import results as results_lib
from cmnet_jax import train_step as ts
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.errors import NonFiniteLossError, RunError, WorkdirError

__all__ = ["NonFiniteLossError", "RunError", "WorkdirError", "maybe_initialize_distributed",
           "train_and_evaluate"]


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Starts multi-host JAX when `train.distributed` or CMNET_DISTRIBUTED=1 asks for it.

  On TPU pods and managed clusters (Slurm) `jax.distributed.initialize()` finds its peers by
  itself. Elsewhere set JAX_COORDINATOR_ADDRESS (host:port of process 0), CMNET_NUM_PROCESSES
  and CMNET_PROCESS_ID in every process.

  A process that dies (killed, out of memory, its host lost) stops the others: JAX's
  coordination service ends every process once the dead one has missed its heartbeats for
  CMNET_HEARTBEAT_TIMEOUT_S seconds (default 100, JAX's), with a message naming the task.
  JAX's preemption service is turned off: it caught SIGTERM and let the run carry on (issue 25);
  `run.py` handles SIGTERM itself in every process (`cmnet_jax.interrupt`).
  """
  if not (config.train.distributed or os.environ.get("CMNET_DISTRIBUTED") == "1"):
    return
  if jax.distributed.is_initialized():
    return
  kwargs = {}
  if "CMNET_NUM_PROCESSES" in os.environ:
    kwargs = {"num_processes": int(os.environ["CMNET_NUM_PROCESSES"]),
              "process_id": int(os.environ["CMNET_PROCESS_ID"])}
  heartbeat = os.environ.get("CMNET_HEARTBEAT_TIMEOUT_S")
  if heartbeat:
    kwargs["heartbeat_timeout_seconds"] = int(heartbeat)
  jax.config.update("jax_enable_preemption_service", False)
  jax.distributed.initialize(**kwargs)


def fold_rng(base_rng: jax.Array, fold_id: int) -> jax.Array:
  """The key a fold's state is initialised from (init, then its batches and augmentations):
  it depends on `train.seed` (`base_rng = PRNGKey(seed)`) and the fold's id only, so a fold
  trains the same whichever group, device or process holds it."""
  return jax.random.fold_in(base_rng, fold_id)


def fold_arrays(data: input_pipeline.ClipData, fold_ids: np.ndarray) -> ts.FoldData:
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
                  steps_per_epoch: int, wd: workdir_lib.Workdir, store) -> None:
  loss = metrics["loss"]  # [slots, steps]
  for slot, fid in enumerate(fold_ids):
    if fid < 0:
      continue
    bad = np.flatnonzero(~np.isfinite(loss[slot]))
    if bad.size:
      step = epoch * steps_per_epoch + int(bad[0])
      raise NonFiniteLossError(
          f"non-finite loss in fold {fid} (test subject {data.folds[fid].test_subject}), "
          f"epoch {epoch + 1}, step {step} (step {int(bad[0])} of that epoch); "
          + _what_is_kept(wd, store))


def _what_is_kept(wd: workdir_lib.Workdir, store) -> str:
  """What a run stopped by a non-finite loss leaves, and how to go on."""
  trained = wd.trained()
  if not trained:
    return ("nothing was saved before it (no checkpoint, no finished fold group), so the "
            f"corrected command (e.g. a lower --config.optim.learning_rate) may run on the same "
            f"--workdir={wd.path}: its config replaces the recorded one")
  saved = store.steps() if store else []
  kept = (f"this fold group's last good checkpoint is epoch {saved[-1]} ({store.directory})"
          if saved else "no checkpoint of this fold group was saved before it")
  return (f"{kept}; the workdir keeps {'; '.join(trained)}. Resuming repeats the same steps "
          "(the run is deterministic) and fails again: train with a changed config (e.g. a "
          "lower --config.optim.learning_rate) in a new --workdir")


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

  Resumes from `workdir` if it holds checkpoints or finished fold groups of the same config and
  data; re-prints a finished run (read-only if this user may not write the workdir). The
  workdir is locked while the run uses it. With `evaluate_only`, nothing is trained: every fold
  group is evaluated again from its final checkpoint (an error names it if it is missing or
  damaged). Returns the results dict (also in the workdir's results.json) on process 0, and an
  empty dict on the other processes of a multi-host run.

  Raises `config_blocks.ConfigError` (every bad key) before anything is read or written.
  """
  config_schema.validate(config)
  maybe_initialize_distributed(config)
  wd = workdir_lib.Workdir(workdir)
  wd.create()
  read_only = not wd.writable()
  with wd.lock(jax.process_index(), shared=read_only):
    return _run(config, wd, evaluate_only=evaluate_only, read_only=read_only)


def _load_data(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir, *,
               evaluate_only: bool, read_only: bool) -> input_pipeline.ClipData:
  """Checks the workdir against the config and data, loads the clips, then records both."""
  if read_only and not evaluate_only and not wd.is_finished():
    raise WorkdirError(f"{wd.path} is not writable by this user and holds no finished run "
                       "(training writes checkpoints and reports there): run as the workdir's "
                       "owner, or copy it (cp -r) and pass the copy as --workdir")
  for note in wd.check_config(config):
    print(note)
  wd.check_groups()
  source = input_pipeline.read_source(config, wd)
  for note in wd.check_data(source.fingerprint, source.clips, source.legacy_fingerprint):
    print(note)
  data = input_pipeline.load_clips(config, wd, source, write_cache=not read_only)
  _validate(config, data)
  if jax.process_index() == 0 and not read_only:
    # Only now: a run that fails before its data loaded leaves no config to refuse the next.
    wd.write_config(config)
    wd.write_folds(data.class_names, [f.test_subject for f in data.folds], source.fingerprint,
                   source.clips)
  return data


def _layout(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir,
            num_folds: int) -> parallel.FoldLayout:
  """The fold layout; a workdir trained with the layout of versions before issue 23 (padded
  slots on devices an explicit train.folds_per_device did not need) keeps it, so it resumes and
  evaluates (its checkpoints hold that many slots)."""
  kwargs = {"num_devices": config.train.num_devices,
            "folds_per_device": config.train.folds_per_device}
  layout = parallel.make_layout(num_folds, **kwargs)
  legacy = parallel.make_layout(num_folds, fewest_devices=False, **kwargs)
  if legacy.slots_per_process == layout.slots_per_process:
    return layout
  process = layout.process_index
  held = [len(wd.load_group(g.path)["fold_ids"]) for g in wd.group_files() if g.process == process]
  held += [checkpoint.saved_slots(wd.checkpoint_dir(g, process)) for g in range(legacy.num_groups)]
  if legacy.slots_per_process in held:
    print(f"note: {wd.path} was trained with {len(legacy.devices)} devices x "
          f"{legacy.folds_per_device} folds ({legacy.slots_per_process} slots for {num_folds} "
          f"folds); it keeps that layout (new runs use {len(layout.devices)} devices)")
    return legacy
  return layout


class _Run(NamedTuple):
  """What every fold group of a run shares (`_prepare`)."""
  config: ml_collections.ConfigDict
  wd: workdir_lib.Workdir
  data: input_pipeline.ClipData
  layout: parallel.FoldLayout
  setup: Any
  device_data: Any
  init_one: Callable
  epoch_fn: Callable
  eval_fn: Callable
  progress: Any
  tb: Any
  mean_tag: str
  evaluate_only: bool
  read_only: bool


def _run(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir, *, evaluate_only: bool,
         read_only: bool) -> dict:
  """Loads the data, trains (or skips, or evaluates) this process's fold groups, gathers every
  process's groups and, on process 0, writes the reports."""
  data = _load_data(config, wd, evaluate_only=evaluate_only, read_only=read_only)
  run = _prepare(config, wd, data, evaluate_only=evaluate_only, read_only=read_only)
  try:
    mine = [_fold_group(run, group) for group in range(run.layout.num_groups)]
    run.progress.close()
    groups = _gather(run.layout, mine)
    if run.layout.process_index != 0:
      return {}
    with interrupt.saving():  # the reports together
      return results_lib.finish(config, wd, data, groups, write=not read_only,
                                tensorboard=run.tb)
  finally:
    if run.tb:
      run.tb.close()
      wd.publish_tensorboard()


def _prepare(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir,
             data: input_pipeline.ClipData, *, evaluate_only: bool, read_only: bool) -> _Run:
  """The layout, the compiled-once epoch and eval functions, the clips on the devices, the
  progress line and the TensorBoard stream."""
  layout = _layout(config, wd, len(data.folds))
  process, tc = layout.process_index, config.train
  setup = ts.make_setup(config, len(data.class_names))
  epoch_fn = parallel.fold_parallel(ts.make_train_epoch(setup.model, setup.tx, config), layout,
                                    fold_args=(0, 1), donate=(0,))
  eval_fn = parallel.fold_parallel(ts.make_eval(setup.model, config), layout, fold_args=(0, 1))
  # Event files written while it trains (one per session): not by eval, a re-print or read-only.
  tb = None
  if not (read_only or evaluate_only or wd.is_finished()):
    wd.fetch_tensorboard()  # object storage: the stream so far, to append to
    tb = reports.ScalarWriter(wd.tensorboard_dir,
                              suffix="" if process == 0 else f".process{process:03d}",
                              last_step=layout.num_groups * tc.num_epochs)
  return _Run(config=config, wd=wd, data=data, layout=layout, setup=setup,
              device_data=parallel.replicate(layout, data.device_data()),
              init_one=ts.make_init(setup.model, setup.tx, setup.sample), epoch_fn=epoch_fn,
              eval_fn=eval_fn, progress=reports.Progress(layout.num_groups, tc.num_epochs), tb=tb,
              mean_tag="mean" if layout.process_count == 1 else f"mean_process{process:03d}",
              evaluate_only=evaluate_only, read_only=read_only)


def _fold_group(run: _Run, group: int) -> dict[str, np.ndarray]:
  """This process's slots of one fold group: skipped if finished (its file read back), else
  restored or initialised, trained, evaluated and stored. Returns the group's arrays."""
  wd, layout, tc = run.wd, run.layout, run.config.train
  process, fold_ids = layout.process_index, layout.local_folds(group)
  if not run.evaluate_only and _finished(wd, group, process, tc.num_epochs):
    run.progress.skip(group)
    return wd.load_group(wd.group_file(group, process))
  fold_data = parallel.shard_folds(layout, fold_arrays(run.data, fold_ids))
  start_epoch, host_state, history, oracle, store = _start_state(run, group, fold_ids)
  state = parallel.shard_folds(layout, host_state)
  state = _train_epochs(run, group, fold_ids, fold_data, state, start_epoch, history, oracle,
                        store)
  evaluated = parallel.unshard(run.eval_fn(state.params, fold_data, run.device_data))
  arrays = results_lib.group_arrays(
      fold_ids=fold_ids, fold_data=fold_arrays(run.data, fold_ids), logits=evaluated.logits,
      intensities=evaluated.intensities, ablated_logits=evaluated.ablated_logits,
      history={k: np.stack(v, 1) for k, v in history.items()}, oracle=oracle)
  if not run.read_only:  # a read-only workdir keeps the evaluated group in memory only
    with interrupt.saving():
      wd.save_group(group, process, arrays)
  if store:
    store.close()
  return arrays


def _start_state(run: _Run, group: int, fold_ids: np.ndarray):
  """(start epoch, host state, history, oracle, checkpoint store) of a fold group: its final
  checkpoint (eval), its latest one (resume), or a fresh per-fold initialisation."""
  wd, tc, process = run.wd, run.config.train, run.layout.process_index
  template = ts.state_template(run.setup, len(fold_ids))
  store = None
  if run.evaluate_only:
    restored = (tc.num_epochs, *_final_state(wd, group, process, tc.num_epochs, template))
  else:
    # Multi-process runs resume at fold-group granularity (finished groups are skipped): Orbax
    # cannot save each process's own, process-local fold arrays (see cmnet_jax.checkpoint).
    store = (checkpoint.CheckpointStore(wd.checkpoint_dir(group, process),
                                        keep=tc.checkpoints_to_keep)
             if checkpoint.is_supported() else None)
    restored = store.restore_latest(template) if store else None
  if restored is not None:
    start_epoch, host_state, extra = restored
    return (start_epoch, host_state, history_from_extra(extra["history"]),
            [(e, np.asarray(p)) for e, p in extra["oracle"]], store)
  base_rng = jax.random.PRNGKey(tc.seed)
  # Padded slots get ids past the real folds.
  fold_rngs = np.stack([np.asarray(fold_rng(base_rng, fid if fid >= 0 else
                                            len(run.data.folds) + slot))
                        for slot, fid in enumerate(fold_ids)])
  host_state = ts.init_fold_states(run.init_one, fold_rngs)
  if run.config.model.pretrained_npz:
    host_state = _load_pretrained(host_state, run.config)
  return 0, host_state, {}, [], store


def _train_epochs(run: _Run, group: int, fold_ids: np.ndarray, fold_data, state, start_epoch: int,
                  history: dict, oracle: list, store):
  """Trains a fold group from `start_epoch` to the last epoch (one compiled scan per epoch),
  streaming scalars, checking the loss, checkpointing; `history` and `oracle` grow in place.
  Returns the device state."""
  tc, setup, tb = run.config.train, run.setup, run.tb
  names = [run.data.folds[f].test_subject if f >= 0 else None for f in fold_ids]
  if tb and start_epoch < tc.num_epochs:
    tb.restart(group * tc.num_epochs + start_epoch + 1)
  for epoch in range(start_epoch, tc.num_epochs):
    t0 = time.perf_counter()
    state, metrics = run.epoch_fn(state, fold_data, run.device_data)
    metrics = parallel.unshard(metrics)
    _check_finite(metrics, fold_ids, run.data, epoch, tc.steps_per_epoch, run.wd, store)
    for k, v in metrics.items():
      history.setdefault(k, []).append(v.mean(axis=1))
    if tc.eval_every_epochs and (epoch + 1) % tc.eval_every_epochs == 0:
      evaluated = parallel.unshard(run.eval_fn(state.params, fold_data, run.device_data))
      oracle.append((epoch + 1, evaluated.logits.argmax(-1)))
    if tb:  # before the checkpoint: a resume re-trains (and re-writes) what follows it
      lr = float(setup.schedule((epoch + 1) * tc.steps_per_epoch - 1))
      tb.write(group * tc.num_epochs + epoch + 1, reports.epoch_scalars(
          metrics, names, learning_rate=lr, mean_tag=run.mean_tag))
      tb.flush()
      run.wd.publish_tensorboard()
    done = epoch + 1 == tc.num_epochs
    if store and (done or (epoch + 1) % tc.checkpoint_every_epochs == 0):
      with interrupt.saving():  # Ctrl-C and SIGTERM let it finish (cmnet_jax.interrupt)
        store.save(epoch + 1, parallel.unshard(state), {
            "history": history,  # arrays: their dtype is kept (history_from_extra)
            "oracle": [(e, p.tolist()) for e, p in oracle]})
    run.progress.update(group, epoch + 1, float(np.mean(metrics["loss"][fold_ids >= 0])),
                        time.perf_counter() - t0)
  return state


def _gather(layout: parallel.FoldLayout, mine: list[dict]) -> list[dict]:
  """Every process's fold groups, in the order (group, process), on every process.

  One process: its own. Several: `jax.experimental.multihost_utils.process_allgather` after
  training, outside any jitted step (every process's arrays of a group have the same shapes,
  the layout being the same), instead of reading the other processes' files: hosts of a pod
  share no disk. If a process died, JAX's coordination service stops the others once its
  heartbeat is missed (`CMNET_HEARTBEAT_TIMEOUT_S`, see `maybe_initialize_distributed`); a live
  one is waited for up to CMNET_GATHER_TIMEOUT_S (default 7 days)."""
  if layout.process_count == 1:
    return mine
  from jax._src import distributed  # pylint: disable=g-import-not-at-top  # its client's barrier
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  # First the coordination service's barrier: a process that finished its groups long before
  # the others (a resumed one skips them) would else fail the collective's own 30 s set-up
  # ("Gloo context initialization failed: ... GetKeyValue() timed out").
  client = distributed.global_state.client
  if client is not None:
    print(f"process {layout.process_index}: fold groups done; waiting for the other processes",
          flush=True)
    client.wait_at_barrier("cmnet_jax_gather", timeout_in_ms=int(1000 * float(
        os.environ.get("CMNET_GATHER_TIMEOUT_S", 7 * 24 * 3600))))
  gathered = multihost_utils.process_allgather({str(g): a for g, a in enumerate(mine)})
  return [{k: np.asarray(v[p]) for k, v in gathered[str(g)].items()}
          for g in range(len(mine)) for p in range(layout.process_count)]


def history_from_extra(saved: dict) -> dict[str, list[np.ndarray]]:
  """The per-epoch training history restored from a checkpoint's extra, bit for bit.

  Saved as arrays, its float32 values come back float32: the resumed run's figures equal the
  uninterrupted run's (restored as float64, the last-epoch means of results.json were computed
  in float64 and differed from a run never stopped by one ulp, issue 23). Checkpoints written
  before saved plain lists of those float32 values: read back as float32, exactly.

  >>> h = history_from_extra({'loss': [[0.5, 0.25]], 'ce': [np.ones(2, np.float32)]})
  >>> h['loss'][0].dtype, h['ce'][0].dtype
  (dtype('float32'), dtype('float32'))
  """
  return {k: [v if isinstance(v, np.ndarray) else np.asarray(v, np.float32) for v in vs]
          for k, vs in saved.items()}


def _finished(wd: workdir_lib.Workdir, group: int, process: int, final_epoch: int) -> bool:
  """Whether a fold group is finished: its results file exists, and so does its final
  checkpoint unless the checkpoints were never kept (multi-process) or were all deleted. A
  group whose final checkpoint was moved away (a damaged one) is trained again to make it."""
  if not wd.group_file(group, process).exists():
    return False
  if not checkpoint.is_supported() or not wd.checkpoint_dir(group, process).is_dir():
    return True
  if final_epoch in wd.checkpoint_steps(group, process):
    return True
  print(f"note: {wd.checkpoint_dir(group, process)} has no final checkpoint (epoch "
        f"{final_epoch}); training fold group {group + 1} again from its latest checkpoint to "
        "make it (the group's results are written again, the same)")
  return False


def _final_state(wd: workdir_lib.Workdir, group: int, process: int, final_epoch: int, template):
  """(state, extra) of a fold group's final checkpoint (eval); an error naming it and the fix."""
  if not checkpoint.is_supported():
    raise RunError("--mode=eval needs the fold groups' checkpoints, which multi-process runs do "
                   "not keep; their results are in the workdir already")
  try:
    return checkpoint.restore_step(wd.checkpoint_dir(group, process), final_epoch, template)
  except checkpoint.CheckpointError as e:
    raise checkpoint.CheckpointError(
        f"{e}. {wd.final_checkpoint_advice(group, process, final_epoch)}") from None
