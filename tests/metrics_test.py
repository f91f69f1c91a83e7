"""Metrics against sklearn on many random cases, including missing classes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from cmnet_jax import metrics


def _random_case(rs: np.random.RandomState):
  """Random labels/predictions; some classes may be missing from labels, predictions or both."""
  c = rs.randint(2, 7)
  n = rs.randint(1, 40)
  lab_classes = rs.choice(c, size=rs.randint(1, c + 1), replace=False)
  pred_classes = rs.choice(c, size=rs.randint(1, c + 1), replace=False)
  labels = rs.choice(lab_classes, size=n)
  preds = np.where(rs.rand(n) < 0.5, labels, rs.choice(pred_classes, size=n))
  return c, labels, preds


def test_confusion_matrix_numpy_and_jax_match_sklearn():
  rs = np.random.RandomState(0)
  jitted = jax.jit(lambda l, p, w: metrics.confusion_matrix(l, p, 6, where=w))
  for _ in range(100):
    c, labels, preds = _random_case(rs)
    want = skm.confusion_matrix(labels, preds, labels=np.arange(c))
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, preds, c), want)
    # JAX: one compiled shape (padded to 40 clips, C = 6), padding masked out.
    pad = 40 - len(labels)
    got = jitted(np.pad(labels, (0, pad)), np.pad(preds, (0, pad)), np.arange(40) < len(labels))
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got)[:c, :c], want)
    assert int(got.sum()) == len(labels)


def test_confusion_matrix_mask_jit_vmap():
  rs = np.random.RandomState(1)
  labels, preds = rs.randint(0, 4, (3, 20)), rs.randint(0, 4, (3, 20))
  mask = rs.rand(3, 20) < 0.7
  f = jax.jit(jax.vmap(lambda l, p, w: metrics.confusion_matrix(l, p, 4, where=w)))
  got = np.asarray(f(labels, preds, mask))
  for i in range(3):
    want = skm.confusion_matrix(labels[i][mask[i]], preds[i][mask[i]], labels=np.arange(4))
    np.testing.assert_array_equal(got[i], want)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels[i], preds[i], 4, where=mask[i]), want)


def test_jax_drops_out_of_range_numpy_raises():
  labels, preds = np.array([0, 1, -1, 3]), np.array([0, 1, 1, 0])
  got = metrics.confusion_matrix(jnp.asarray(labels), jnp.asarray(preds), 3)
  np.testing.assert_array_equal(np.asarray(got), skm.confusion_matrix([0, 1], [0, 1], labels=[0, 1, 2]))
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
    metrics.confusion_matrix(labels, preds, 3)
  with pytest.raises(ValueError, match="differ in shape"):
    metrics.confusion_matrix([0, 1], [0], 3)
  with pytest.raises(ValueError, match="integers"):
    metrics.confusion_matrix(np.array([0.5]), np.array([0]), 3)


def test_summarize_matches_sklearn_with_missing_classes():
  rs = np.random.RandomState(2)
  missing_seen = 0
  for _ in range(150):
    c, labels, preds = _random_case(rs)
    missing_seen += len(set(range(c)) - set(labels) - set(preds)) > 0
    s = metrics.summarize(metrics.confusion_matrix(labels, preds, c))
    kw = dict(labels=np.arange(c), zero_division=0)
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)
    assert s["uf1"] == pytest.approx(skm.f1_score(labels, preds, average="macro", **kw), abs=1e-12)
    assert s["uar"] == pytest.approx(skm.recall_score(labels, preds, average="macro", **kw),
                                     abs=1e-12)
    np.testing.assert_allclose(s["per_class_f1"], skm.f1_score(labels, preds, average=None, **kw),
                               atol=1e-12)
    np.testing.assert_allclose(s["per_class_recall"],
                               skm.recall_score(labels, preds, average=None, **kw), atol=1e-12)
    np.testing.assert_array_equal(s["support"], np.bincount(labels, minlength=c))
    assert s["num_samples"] == len(labels)
  assert missing_seen > 10  # the empty-class rule was really exercised


def test_summarize_equals_plain_macro_when_every_class_occurs():
  rs = np.random.RandomState(3)
  labels = np.tile(np.arange(5), 10)
  preds = rs.randint(0, 5, labels.size)
  s = metrics.summarize(metrics.confusion_matrix(labels, preds, 5))
  assert s["uf1"] == pytest.approx(skm.f1_score(labels, preds, average="macro"), abs=1e-12)
  assert s["uar"] == pytest.approx(skm.balanced_accuracy_score(labels, preds), abs=1e-12)


def test_summarize_bad_input():
  with pytest.raises(ValueError, match="square"):
    metrics.summarize(np.zeros((2, 3), int))
  with pytest.raises(ValueError, match="empty"):
    metrics.summarize(np.zeros((3, 3), int))
  with pytest.raises(ValueError, match="non-negative integer"):
    metrics.summarize(np.array([[1.5, 0], [0, 1]]))


def test_per_group_matches_sklearn_on_each_part():
  rs = np.random.RandomState(4)
  n, c = 200, 3
  labels, preds = rs.randint(0, c, n), rs.randint(0, c, n)
  dbs = rs.choice(["casme2", "smic", "samm"], n)
  result = metrics.per_group(labels, preds, dbs.tolist(), c)
  assert list(result) == list(dict.fromkeys(dbs.tolist()))
  for db, s in result.items():
    m = dbs == db
    assert s["uf1"] == pytest.approx(
        skm.f1_score(labels[m], preds[m], labels=np.arange(c), average="macro", zero_division=0))
    assert s["uar"] == pytest.approx(skm.recall_score(
        labels[m], preds[m], labels=np.arange(c), average="macro", zero_division=0))
    assert s["num_samples"] == m.sum()
  subjects = list(zip(dbs.tolist(), rs.randint(0, 5, n).tolist()))
  rows = metrics.per_group(labels, preds, subjects, c)
  assert sum(r["num_samples"] for r in rows.values()) == n
  with pytest.raises(ValueError, match="one length"):
    metrics.per_group(labels, preds, subjects[:-1], c)
