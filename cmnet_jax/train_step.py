"""One fold's training epoch and evaluation, as pure functions of arrays.

Everything here works on ONE fold; `cmnet_jax.parallel` lifts it to all folds (vmap) and devices
(pmap). Data live on the device for the whole run (`DeviceData`); each step draws its batch on the
device from the fold's own training clips, augments it, and updates the fold's parameters. An
epoch is one `lax.scan` over steps: no host round trip per step.

Per-step randomness is `fold_in(state.rng, state.step)`, so a resumed run repeats the same draws.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cmnet_jax import augment
from cmnet_jax import config_blocks
from cmnet_jax import losses


@flax.struct.dataclass
class TrainState:
  """Arrays only (an Orbax checkpoint is this pytree)."""
  step: jnp.ndarray
  params: Any
  opt_state: Any
  rng: jnp.ndarray


class DeviceData(NamedTuple):
  """The sampled clips of a run, on the device once.

  train_frames: uint8 `[clips, copies, time, height, width, 3]` (jittered temporal samplings).
  train_apex: int32 `[clips, copies]` apex position in each sampling.
  eval_frames: uint8 `[clips, time, height, width, 3]` (deterministic sampling).
  eval_apex: int32 `[clips]`.
  labels: int32 `[clips]`.
  train_intensity: float32 `[clips, copies, time]`, the true intensity of each training
    sampling (synthetic data; zeros where unknown). Used only by `model.intensity_source='oracle'`.
  eval_intensity: float32 `[clips, time]`, the same for the evaluation sampling.
  """
  train_frames: jnp.ndarray
  train_apex: jnp.ndarray
  eval_frames: jnp.ndarray
  eval_apex: jnp.ndarray
  labels: jnp.ndarray
  train_intensity: jnp.ndarray
  eval_intensity: jnp.ndarray


class EvalOutput(NamedTuple):
  """What `make_eval`'s function returns for one fold's held-out clips (padded to max_test).

  logits: float32 `[max_test, C]`.
  intensities: float32 `[max_test, T]`, the s_t the classifier saw.
  ablated_logits: float32 `[max_test, C]`, the logits when every clip's s_t is replaced by its
    clip mean (the gate ablation: do the intensities' variations over time change predictions?).
  """
  logits: jnp.ndarray
  intensities: jnp.ndarray
  ablated_logits: jnp.ndarray


class FoldData(NamedTuple):
  """Per-fold index arrays (leading fold axis once stacked).

  train_weights: float32 `[clips]`, sampling probability of each clip (0 = not in training).
  test_ids: int32 `[max_test]` clip ids of the held-out subject, padded.
  test_mask: bool `[max_test]`.
  """
  train_weights: jnp.ndarray
  test_ids: jnp.ndarray
  test_mask: jnp.ndarray


def make_schedule(optim_config: ml_collections.ConfigDict, total_steps: int):
  """The learning rate of each step: linear warm-up from 0, then cosine decay to 0."""
  warmup = min(int(optim_config.warmup_steps), max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim_config.learning_rate, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=0.0)


def make_optimizer(optim_config: ml_collections.ConfigDict, total_steps: int):
  """AdamW with linear warm-up then cosine decay, after global-norm gradient clipping."""
  return optax.chain(
      optax.clip_by_global_norm(optim_config.grad_clip_norm),
      optax.adamw(make_schedule(optim_config, total_steps),
                  weight_decay=optim_config.weight_decay))


class Setup(NamedTuple):
  """What a run's fold states are built from; the training loop and `predict` share it.

  model: the Flax module; tx: the optimizer; schedule: its learning rate per step;
  sample: one zero clip, uint8 `[1, T, size, size, 3]` (shapes for initialisation).
  """
  model: Any
  tx: Any
  schedule: Callable
  sample: np.ndarray


def make_setup(config: ml_collections.ConfigDict, num_classes: int) -> Setup:
  """The model, optimizer and schedule of a config (`num_classes` outputs)."""
  from cmnet_jax import models  # pylint: disable=g-import-not-at-top
  total = config.train.num_epochs * config.train.steps_per_epoch
  size = config.data.image_size
  return Setup(models.build(config.model, num_classes), make_optimizer(config.optim, total),
               make_schedule(config.optim, total),
               np.zeros((1, config.data.num_frames, size, size, 3), np.uint8))


def state_template(setup: Setup, num_slots: int) -> TrainState:
  """Shapes and dtypes (`jax.ShapeDtypeStruct`s) of `num_slots` stacked fold states, computed
  without running anything: the template a checkpoint is restored into."""
  return jax.eval_shape(jax.vmap(lambda r: init_state(setup.model, setup.tx, r, setup.sample)),
                        jax.random.split(jax.random.PRNGKey(0), num_slots))


def init_state(model, tx, rng: jnp.ndarray, sample_clips: jnp.ndarray) -> TrainState:
  """One fold's initial state (vmap it over fold rngs)."""
  init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
  variables = model.init({"params": init_rng, "dropout": dropout_rng}, sample_clips, train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=state_rng)


def make_init(model, tx, sample_clips) -> Callable[[jnp.ndarray], TrainState]:
  """One fold's jitted `init_state(rng)`; build it once per run and pass it to `init_fold_states`."""
  return jax.jit(lambda rng: init_state(model, tx, rng, sample_clips))


def init_fold_states(init_one: Callable[[jnp.ndarray], TrainState], fold_rngs) -> TrainState:
  """Initial states of several folds, stacked on a leading fold axis, as host NumPy arrays.

  `init_one` is `make_init(...)`: each fold is initialised by one un-vmapped call. We do not
  vmap the initialisation over folds: the LSTM's orthogonal initialiser is a QR factorisation, and
  jaxlib 0.10.2's batched CPU QR kernel (`ParallelBatchMap` on XLA's intra-op pool) deadlocks
  when several batched QRs run at once on a small pool (seen on 2 cores: every thread idle,
  forever). Initialisation is a negligible cost, and fold i's state depends only on its rng.
  """
  states = [jax.device_get(init_one(rng)) for rng in np.asarray(fold_rngs)]
  return jax.tree.map(lambda *xs: np.stack(xs), *states)


def make_loss_fn(model, config: ml_collections.ConfigDict, *,
                 fuse_positives: bool | None = None) -> Callable:
  """`loss_fn(params, clips, labels, apex, rng, gate=None) -> (total, (logs, logits))`.

  `gate` `[B, T]`, if given, replaces the model's s_t in the fusion (the oracle and tent arms).
  `fuse_positives`: True = when the ID term is active, the ICE encodes the clips and their
  positive views in one call (`CMNet.with_positives`); False = a separate `intensity_branch` call
  when a term first asks for them. Same values up to float rounding (tests compare the two).
  None (default) = fuse on GPU/TPU (larger kernels, fewer launches) but not on CPU, where one
  call on twice the frames measured 6-14 % slower than two calls (its working set falls out of
  the cache; docs/benchmarks.md).

  The objective's terms come from the registry (`cmnet_jax.losses.TERMS`): every term with a
  non-zero coefficient in `config.loss` (and every diagnostic term) is computed from the same
  `StepInputs`, and `logs` holds each term's mean and metrics.
  """
  lc = losses.terms.resolve_preset(config.loss)
  objective = losses.make_objective(losses.terms.objective_coefficients(lc))
  # (active_terms raises now, not at trace time, if a term's keys are missing.)
  uses_positives = any(t.name == "id" for t, _ in losses.terms.active_terms(lc))
  if fuse_positives is None:
    fuse_positives = jax.default_backend() != "cpu"

  def views_of(clips, rng):
    # Positive view of frame t: photometric augmentation of frame t; its onset reference gets
    # the same draw (same key per (clip, frame)), so the onset difference stays a motion signal.
    if config.model.input_mode == "raw":
      return augment.positive_views(rng, clips, config.augment), None
    return augment.positive_views_with_onset(rng, clips, config.augment)

  # Teacher forcing replaces the fusion's gate only (the losses see the learned s); the oracle,
  # tent and constant arms replace s itself.
  teacher = _intensity_source(config) == "learned" and _teacher_forced(config)

  def loss_fn(params, clips, labels, apex, rng, gate=None):
    key = losses.terms.stream_keys(rng)
    variables = {"params": params}
    rngs = {"dropout": key("dropout")}
    given = {"gate": gate} if teacher else {"intensities": gate}
    if fuse_positives and uses_positives:
      # The ID term will ask for the positive views' embeddings: encode them with the clips in
      # one ICE call (same values as the lazy path below, up to float rounding).
      views, reference = views_of(clips, key("positives"))
      out, fused = model.apply(variables, clips, views, train=True, rngs=rngs, **given,
                               positives_reference=reference, method="with_positives")
      positive_embeddings = lambda: fused  # noqa: E731
    else:
      out = model.apply(variables, clips, train=True, rngs=rngs, **given)

      def positive_embeddings():
        views, reference = views_of(clips, key("positives"))
        _, positives = model.apply(variables, views, train=True, reference=reference,
                                   method="intensity_branch")
        return positives

    def prototype():
      return jax.vmap(lambda a: losses.intensity_prototype(
          clips.shape[1], a, epsilon=lc.prototype_epsilon,
          sigma_floor=lc.prototype_sigma_floor))(apex)

    step = losses.StepInputs(clips=clips, labels=labels, apex=apex, output=out, key=key,
                             positive_embeddings=positive_embeddings, prototype=prototype)
    total, logs = losses.terms.evaluate_terms(step, lc, objective)
    return total, (logs, out.logits)

  return loss_fn


def sample_batch(rng: jax.Array, fold: FoldData, data: DeviceData,
                 config: ml_collections.ConfigDict):
  """One training batch as the train step draws it: `(clips, labels, apex, gate, loss_rng)`.

  `train.batch_size` clips drawn without replacement with the fold's training weights, one
  stored copy (frame sampling) of each, clip augmentation applied; `gate` is the true intensity
  with `model.intensity_source='oracle'`, the fixed tent (`tent_gate`) with 'tent', ones with
  'constant', else None;
  `loss_rng` is the key for `loss_fn`.
  """
  k_batch, k_copy, k_aug, k_loss = jax.random.split(rng, 4)
  batch_size = config.train.batch_size
  ids = jax.random.choice(k_batch, data.labels.shape[0], (batch_size,), replace=False,
                          p=fold.train_weights)
  copy = jax.random.randint(k_copy, (batch_size,), 0, data.train_frames.shape[1])
  clips = augment.clip_augment(k_aug, data.train_frames[ids, copy], config.augment)
  apex = data.train_apex[ids, copy]
  gate = _gate(config, lambda: data.train_intensity[ids, copy], clips.shape[:2], apex=apex)
  return clips, data.labels[ids], apex, gate, k_loss


def make_train_epoch(model, tx, config: ml_collections.ConfigDict) -> Callable:
  """`epoch(state, fold, data) -> (state, metrics)`: `steps_per_epoch` steps in one `lax.scan`.

  metrics: dict of `[steps]` arrays: 'loss', each term, and 'accuracy' (training batch).
  """
  tc = config.train
  loss_fn = make_loss_fn(model, config)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  _intensity_source(config)  # an unknown model.intensity_source raises now, not when traced

  def step(state: TrainState, fold: FoldData, data: DeviceData):
    rng = jax.random.fold_in(state.rng, state.step)
    clips, labels, apex, gate, k_loss = sample_batch(rng, fold, data, config)
    (total, (logs, logits)), grads = grad_fn(state.params, clips, labels, apex, k_loss, gate)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(logs, loss=total,
                   accuracy=jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32)))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def epoch(state, fold, data):
    return jax.lax.scan(lambda s, _: step(s, fold, data), state, None,
                        length=tc.steps_per_epoch)

  return epoch


def _intensity_source(config: ml_collections.ConfigDict) -> str:
  """`model.intensity_source`, read (and checked) by its declaration in `models.SPEC`."""
  return _model_keys(config, "intensity_source")["intensity_source"]


def _teacher_forced(config: ml_collections.ConfigDict) -> bool:
  """`model.train_gate == 'prototype'` (checked by its declaration in `models.SPEC`)."""
  return _model_keys(config, "train_gate")["train_gate"] == "prototype"


def _model_keys(config: ml_collections.ConfigDict, *keys: str) -> dict:
  """`{key: model.<key>}`, read (and checked) by their declarations in `models.SPEC`."""
  from cmnet_jax import models  # pylint: disable=g-import-not-at-top
  return config_blocks.read_block(config.model, models.SPEC.only(*keys), "model")


def tent_gate(num_frames: int, config: ml_collections.ConfigDict) -> jax.Array:
  """The position prior of `model.intensity_source='tent'`: `[T]`, the intensity prototype's mean
  with the apex at index T // 2 (epsilon at onset and offset, 1 at the middle frame)."""
  lc = losses.terms.resolve_preset(config.loss)
  return losses.intensity_prototype(num_frames, num_frames // 2, epsilon=lc.prototype_epsilon,
                                    sigma_floor=lc.prototype_sigma_floor)[0]


def _gate(config: ml_collections.ConfigDict, true_intensity: Callable,
          batch_time: tuple, apex: jax.Array | None = None) -> jax.Array | None:
  """What replaces s_t in the fusion, `[B, T]`, or None (the learned s_t).

  The oracle's and the tent's curves pass through `model.gate_norm` like a learned s would
  (e.g. 'softmax': the sharpened position prior, the control of the softmax gate).
  `apex` `[B]` is given by the training step only: with `model.train_gate='prototype'` the
  training gate is the intensity prototype's mean at each clip's annotated apex (teacher
  forcing); evaluation, which passes no apex, always uses the learned s."""
  source = _intensity_source(config)
  teacher = source == "learned" and apex is not None and _teacher_forced(config)
  if source in ("oracle", "tent") or teacher:
    if teacher:
      lc = losses.terms.resolve_preset(config.loss)
      curve = jax.vmap(lambda a: losses.intensity_prototype(
          batch_time[1], a, epsilon=lc.prototype_epsilon,
          sigma_floor=lc.prototype_sigma_floor)[0])(apex)
    else:
      curve = (true_intensity() if source == "oracle"
               else jnp.broadcast_to(tent_gate(batch_time[1], config), batch_time))
    if config.model.gate_norm == "none":
      return curve
    from cmnet_jax.models import cmnet  # pylint: disable=g-import-not-at-top
    return cmnet.normalise_gate(jnp.asarray(curve, jnp.float32), config.model.gate_norm,
                                skip_onset=config.model.input_mode == "onset_difference",
                                temperature=config.model.gate_temperature)
  if source == "constant":
    return jnp.ones(batch_time, jnp.float32)
  return None


def make_eval(model, config: ml_collections.ConfigDict) -> Callable:
  """`evaluate(params, fold, data) -> EvalOutput` on the fold's held-out clips."""
  _intensity_source(config)

  def evaluate(params, fold: FoldData, data: DeviceData):
    clips = data.eval_frames[fold.test_ids]
    gate = _gate(config, lambda: data.eval_intensity[fold.test_ids], clips.shape[:2])
    apply = lambda g: model.apply({"params": params}, clips, train=False, intensities=g)
    out = apply(gate)
    s = out.intensities.astype(jnp.float32)
    flat = jnp.broadcast_to(jnp.mean(s, axis=1, keepdims=True), s.shape)
    return EvalOutput(out.logits.astype(jnp.float32), s,
                      apply(flat).logits.astype(jnp.float32))
  return evaluate
