"""cmnet_jax.train_step: the loss function's fused ICE path equals the separate calls."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmnet_jax import models
from cmnet_jax import train_step
from configs import common


@pytest.mark.parametrize("input_mode,oracle", [("onset_difference", False), ("raw", True)])
def test_fused_positive_views_equal_separate_calls(input_mode, oracle):
  """make_loss_fn(fuse_positives=True) (clips and positive views in one ICE call) gives the
  same loss, logs, logits and gradients as the separate intensity_branch call, same draws."""
  c = common.base_config("synthetic", "small")
  c.model.widths, c.model.feature_dim, c.model.embedding_dim = (4, 8), 8, 6
  c.model.lstm_hidden, c.model.norm_groups, c.model.input_mode = 5, 2, input_mode
  model = models.build(c.model, 5)
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, (3, 5, 16, 16, 3), dtype=np.uint8)
  labels, apex = np.array([1, 3, 0]), np.array([2, 3, 1])
  gate = rng.uniform(size=(3, 5)).astype(np.float32) if oracle else None
  key = jax.random.key(3, impl="rbg")
  params = jax.jit(model.init)({"params": key, "dropout": key}, clips)["params"]
  results = []
  for fuse in (True, False):
    loss = jax.value_and_grad(train_step.make_loss_fn(model, c, fuse_positives=fuse),
                              has_aux=True)
    results.append(jax.jit(loss)(params, clips, labels, apex, key, gate))
  (total, (logs, logits)), grads = results[0]
  (total2, (logs2, logits2)), grads2 = results[1]
  assert logs["id"] > 0  # the ID term ran on the positive views
  np.testing.assert_allclose(total, total2, rtol=1e-5)
  assert logs.keys() == logs2.keys()
  for k in logs:
    np.testing.assert_allclose(logs[k], logs2[k], rtol=1e-5, atol=1e-6, err_msg=k)
  np.testing.assert_allclose(logits, logits2, rtol=1e-5, atol=1e-6)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads2)):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(r).max())))


def test_unknown_intensity_source_is_named_when_the_epoch_is_built():
  from configs import tiny  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  model = models.build(config.model, 3)
  tx = train_step.make_optimizer(config.optim, 10)
  config.model.intensity_source = "truth"
  with pytest.raises(ValueError, match="model.intensity_source.*'truth'"):
    train_step.make_train_epoch(model, tx, config)


@pytest.mark.parametrize("num_frames", [5, 9])
def test_tent_and_constant_gates(num_frames):
  """model.intensity_source='tent' (the position prior, issue 22): epsilon at onset and offset, 1
  at index T // 2, linear between (the prototype's mean, written here from that rule);
  'constant': 1 everywhere; 'learned': no gate."""
  c = common.base_config("synthetic", "small")
  eps, a, t = c.loss.prototype_epsilon, num_frames // 2, np.arange(num_frames)
  rising = eps + (1 - eps) * t / a
  falling = 1 - (1 - eps) * (t - a) / (num_frames - 1 - a)
  expected = np.where(t <= a, rising, falling)
  np.testing.assert_allclose(np.asarray(train_step.tent_gate(num_frames, c)), expected, rtol=1e-6)
  truth = lambda: np.full((2, num_frames), 0.25, np.float32)  # noqa: E731
  for source, want in (("tent", np.tile(expected, (2, 1))), ("constant", np.ones((2, num_frames))),
                       ("oracle", truth())):
    c.model.intensity_source = source
    np.testing.assert_allclose(np.asarray(train_step._gate(c, truth, (2, num_frames))),  # pylint: disable=protected-access
                               want, rtol=1e-6)
  c.model.intensity_source = "learned"
  assert train_step._gate(c, truth, (2, num_frames)) is None  # pylint: disable=protected-access
  # With model.gate_norm='softmax' the tent and the oracle's curve are sharpened like a learned
  # s (the controls of the softmax gate): exp((g - max g) / tau), onset frame 0.
  c.model.gate_norm, c.model.gate_temperature = "softmax", 0.2
  sharp = np.exp((expected - expected[1:].max()) / 0.2)
  sharp[0] = 0.0
  c.model.intensity_source = "tent"
  np.testing.assert_allclose(np.asarray(train_step._gate(c, truth, (2, num_frames))),  # pylint: disable=protected-access
                             np.tile(sharp, (2, 1)), rtol=1e-5, atol=1e-7)
  c.model.intensity_source = "oracle"
  want = np.exp((truth() - 0.25) / 0.2)
  want[:, 0] = 0.0
  np.testing.assert_allclose(np.asarray(train_step._gate(c, truth, (2, num_frames))),  # pylint: disable=protected-access
                             want, rtol=1e-5)


def test_teacher_forced_training_gate_is_the_prototype_at_the_annotated_apex():
  """model.train_gate='prototype' (issue 22): in training (an apex is given) the fusion sees the
  prototype's mean at each clip's apex, through gate_norm; evaluation (no apex) the learned s."""
  c = common.base_config("synthetic", "small")
  eps = c.loss.prototype_epsilon
  c.model.train_gate = "prototype"
  apex = np.array([2, 5])
  t = np.arange(9)
  expected = []
  for a in apex:  # the prototype's mean written from its rule
    expected.append(np.where(t <= a, eps + (1 - eps) * t / a,
                             eps + (1 - eps) * (8 - t) / (8 - a)))
  expected = np.stack(expected)
  truth = lambda: np.zeros((2, 9), np.float32)  # noqa: E731
  got = train_step._gate(c, truth, (2, 9), apex=jnp.asarray(apex))  # pylint: disable=protected-access
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
  assert train_step._gate(c, truth, (2, 9)) is None  # pylint: disable=protected-access
  c.model.gate_norm = "softmax"
  sharp = np.exp((expected - 1.0) / c.model.gate_temperature)
  sharp[:, 0] = 0.0
  got = train_step._gate(c, truth, (2, 9), apex=jnp.asarray(apex))  # pylint: disable=protected-access
  np.testing.assert_allclose(np.asarray(got), sharp, rtol=1e-4, atol=1e-7)
  c.model.train_gate = "learned"
  assert train_step._gate(c, truth, (2, 9), apex=jnp.asarray(apex)) is None  # pylint: disable=protected-access


def test_teacher_forcing_keeps_the_learned_s_for_the_losses():
  """With model.train_gate='prototype' the loss terms see the learned s (their values equal a
  plain model's on the same batch), while the logits come from the prototype gate."""
  from configs import tiny  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  model = models.build(config.model, 3)
  clips = jax.random.randint(jax.random.key(0), (2, config.data.num_frames, 16, 16, 3), 0, 255
                             ).astype(jnp.uint8)
  params = jax.jit(model.init)(jax.random.key(1), clips)["params"]
  labels, apex = jnp.array([0, 1]), jnp.array([2, 3])
  gate = jnp.tile(jnp.linspace(0.0, 1.0, config.data.num_frames), (2, 1))
  plain = train_step.make_loss_fn(model, config)(params, clips, labels, apex, jax.random.key(2))
  with config.unlocked():
    config.model.train_gate = "prototype"
  forced = train_step.make_loss_fn(model, config)(params, clips, labels, apex,
                                                  jax.random.key(2), gate)
  logs_plain, logs_forced = plain[1][0], forced[1][0]
  for term in ("order", "wilcoxon"):
    if term in logs_plain:
      np.testing.assert_allclose(logs_forced[term], logs_plain[term], rtol=1e-5)
  assert any(t in logs_plain for t in ("order", "wilcoxon"))
  assert not np.allclose(forced[1][1], plain[1][1])
