"""The registry of objective terms: config keys, objective and train step derive from it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmnet_jax import losses
from cmnet_jax import models
from cmnet_jax import train_step as ts
from configs import common
from configs import tiny


def test_builtin_terms_declare_the_loss_config_keys():
  assert list(losses.TERMS)[:4] == ["id", "wilcoxon", "order", "ce"]
  config = common.loss_config()
  expected = set(losses.SHARED_OPTIONS)
  for term in losses.TERMS.values():
    expected |= {term.coefficient_key, *term.options}
  assert set(config.keys()) == expected
  assert losses.coefficients_from_config(config)["wilcoxon"] == config.lambda_w
  assert losses.TERMS["wilcoxon"].options["w_margin"].default == config.w_margin


def test_conflicting_or_malformed_terms_are_refused():
  with pytest.raises(ValueError, match="already registered"):
    losses.register_term(losses.Term("ce", lambda s, o: s.labels))
  with pytest.raises(ValueError, match="loss.w_margin is already used by wilcoxon"):
    losses.register_term(losses.Term("other", lambda s, o: s.labels,
                                     options={"w_margin": losses.Option(0.1, "")}))
  with pytest.raises(ValueError, match="identifier"):
    losses.Term("bad name", lambda s, o: s.labels)
  assert "other" not in losses.TERMS


def test_stream_keys_are_the_split_streams_then_named_folds():
  rng = jax.random.PRNGKey(3)
  key = losses.terms.stream_keys(rng)
  split = jax.random.split(rng, 4)
  for i, name in enumerate(["dropout", "positives", "negatives", "prototype"]):
    np.testing.assert_array_equal(key(name), split[i])
  a, b = np.asarray(key("my_term")), np.asarray(key("other_term"))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(a, key("my_term"))


def _step(config, extra_loss_keys=()):
  model = models.build(config.model, 5)
  tx = ts.make_optimizer(config.optim, 10)
  clips = jax.random.randint(jax.random.PRNGKey(0), (4, config.data.num_frames, 16, 16, 3), 0,
                             255).astype(jnp.uint8)
  state = ts.init_state(model, tx, jax.random.PRNGKey(1), clips[:1])
  loss_fn = ts.make_loss_fn(model, config)
  labels, apex = jnp.array([0, 1, 2, 3]), jnp.full((4,), 2)
  return jax.jit(loss_fn)(state.params, clips.astype(jnp.float32) / 255, labels, apex,
                          jax.random.PRNGKey(2))


def test_a_registered_term_reaches_the_config_and_the_train_step():
  def far_from_half(step, options):
    s = step.output.intensities
    return jnp.mean((s - options["half_target"]) ** 2, axis=-1), {"max": jnp.max(s)}

  losses.register_term(losses.Term("half", far_from_half, coefficient=0.5,
                                   options={"half_target": losses.Option(0.5, "target")}))
  try:
    config = tiny.get_config()
    assert config.loss.lambda_half == 0.5 and config.loss.half_target == 0.5
    total, (logs, _) = _step(config)
    assert {"half", "half_max", "ce", "id", "wilcoxon", "order"} <= set(logs)
    weights = losses.terms.objective_coefficients(config.loss)
    np.testing.assert_allclose(total, sum(weights[k] * logs[k] for k in weights), rtol=1e-5)
    with config.unlocked():
      config.loss.lambda_half = 0.0
    _, (logs, _) = _step(config)
    assert "half" not in logs            # zero coefficient: not computed
  finally:
    losses.unregister_term("half")
  built_before = tiny.get_config()        # without the term's keys
  losses.register_term(losses.Term("half", far_from_half))
  try:
    with pytest.raises(KeyError, match="lambda_half"):
      losses.coefficients_from_config(built_before.loss)
    losses.coefficients_from_config(config.loss)  # built while 'half' was registered: fine
  finally:
    losses.unregister_term("half")
  assert "half" not in losses.TERMS


def test_a_term_must_return_a_per_clip_loss():
  losses.register_term(losses.Term("scalar", lambda s, o: jnp.sum(s.output.logits),
                                   coefficient=1.0))
  try:
    with pytest.raises(ValueError, match="per-clip loss"):
      _step(tiny.get_config())
  finally:
    losses.unregister_term("scalar")


def test_paper_preset_sets_the_paper_objective_and_refuses_conflicts():
  config = tiny.get_config()
  with config.unlocked():
    config.loss.preset = "paper"
  resolved = losses.resolve_preset(config.loss)
  assert (resolved.w_penalty, resolved.lambda_order, resolved.id_normalize_differences,
          resolved.lambda_w, resolved.lambda_id) == ("p_hinge", 0.0, False, 0.1, 0.1)
  assert config.loss.w_penalty == "z_hinge"                # the config itself is unchanged
  with config.unlocked():
    config.loss.lambda_order = 0.7                         # changed by the user: a conflict
  with pytest.raises(ValueError, match="lambda_order"):
    losses.resolve_preset(config.loss)
  with config.unlocked():
    config.loss.preset = "nonsense"
  with pytest.raises(ValueError, match="unknown preset"):
    losses.resolve_preset(config.loss)
  assert losses.resolve_preset(tiny.get_config().loss).preset == ""
