"""examples/custom_loss.py: a term registered with the public API trains and is logged."""
import numpy as np
import jax.numpy as jnp

from cmnet_jax import losses
from examples import custom_loss


def test_apex_peak_loss_matches_a_loop():
  rng = np.random.default_rng(0)
  s = rng.uniform(size=(5, 7)).astype(np.float32)
  apex = rng.integers(0, 7, size=5)
  got = custom_loss.apex_peak_loss(jnp.asarray(s), jnp.asarray(apex), margin=0.2)
  expected = [np.mean([max(0.0, s[b, t] - s[b, apex[b]] + 0.2) for t in range(7) if t != apex[b]])
              for b in range(5)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_custom_term_trains_and_is_logged(tmp_path, capsys):
  try:
    results = custom_loss.main(["--workdir", str(tmp_path / "run")])
  finally:
    losses.unregister_term("peak")
  config = results["config"]["loss"]
  assert config["lambda_peak"] == 0.05 and config["peak_margin"] == 0.1
  logged = results["training_last_epoch"]
  assert {"peak", "peak_active", "ce", "loss"} <= set(logged)
  assert np.isfinite(logged["peak"]) and logged["peak"] >= 0
  assert "peak" in capsys.readouterr().out


def test_the_example_is_a_plugin_whose_keys_reach_the_config():
  """Way 2 of the example: `--plugins=examples.custom_loss` imports it and calls `register()`
  (tests/plugins_test.py runs such a plug-in end to end); importing it registered nothing."""
  from cmnet_jax import plugins  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  assert "peak" not in losses.TERMS and "lambda_peak" not in tiny.get_config().loss
  try:
    plugins.load(["examples.custom_loss"], source="--plugins")
    assert losses.TERMS["peak"] is custom_loss.PEAK
    config = tiny.get_config()
    assert (config.loss.lambda_peak, config.loss.peak_margin) == (0.05, 0.1)
  finally:
    losses.unregister_term("peak")
