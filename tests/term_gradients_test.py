"""experiments/term_gradients.py: per-term gradients add up to the objective's, and the group
norms are the norms of the right parameters (checked in NumPy float64)."""
import jax
import jax.numpy as jnp
import numpy as np

from cmnet_jax import losses, models, train_step as ts
from configs import tiny
from experiments import term_gradients as tg


def _batch():
  config = tiny.get_config()
  model = models.build(config.model, 4)
  tx = ts.make_optimizer(config.optim, 10)
  clips = jax.random.randint(jax.random.PRNGKey(0), (4, config.data.num_frames, 16, 16, 3), 0,
                             255).astype(jnp.uint8)
  state = ts.init_state(model, tx, jax.random.PRNGKey(1), clips[:1])
  batch = (clips.astype(jnp.float32) / 255, jnp.array([0, 1, 2, 3]),
           jnp.full((4,), 2), jax.random.PRNGKey(2), None)
  coefficients = losses.terms.objective_coefficients(losses.terms.resolve_preset(config.loss))
  return ts.make_loss_fn(model, config), coefficients, state.params, batch


def test_term_gradients_sum_to_the_objective_gradient_and_norms_are_per_group():
  loss_fn, coefficients, params, batch = _batch()
  assert len(coefficients) >= 3           # CE plus intensity terms: a real split
  grads, total = jax.jit(lambda p: (tg.weighted_term_gradients(loss_fn, coefficients, p, *batch),
                                    jax.grad(lambda q: loss_fn(q, *batch)[0])(p)))(params)
  summed = jax.tree.map(lambda *g: sum(g), *grads.values())
  for got, want in zip(jax.tree.leaves(summed), jax.tree.leaves(total)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)

  stats = jax.device_get(tg.gradient_stats(grads))
  f64 = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64))  # noqa: E731
                                     for x in jax.tree.leaves(tree)])
  for name, tree in grads.items():
    for group in ("intensity", "ffe", "head"):
      tops = [t for t in tree if tg.group_of(t) == group]
      assert tops, group
      want = np.linalg.norm(np.concatenate([f64(tree[t]) for t in sorted(tops)]))
      np.testing.assert_allclose(stats[(name, group)], want, rtol=1e-5)
    np.testing.assert_allclose(stats[(name, "all")], np.linalg.norm(f64(tree)), rtol=1e-5)
  np.testing.assert_allclose(stats[("sum", "all")], np.linalg.norm(f64(total)), rtol=1e-4)
  # CE does not reach the ID projection head; the ID term does.
  assert stats[("ce", "id_projection")] == 0 and stats[("id", "id_projection")] > 0
  ice = lambda t: f64({k: v for k, v in t.items() if tg.group_of(k) == "intensity"})  # noqa: E731
  for name in grads:
    if name != "ce":
      a, b = ice(grads[name]), ice(grads["ce"])
      np.testing.assert_allclose(stats[(name, "cos_ce")],
                                 a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30),
                                 atol=1e-4)
