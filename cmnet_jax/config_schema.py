"""The schema of a run's config: every block's spec, the rules between blocks, `validate`.

Each block is declared once, next to the code that reads it, each key with its default, type,
check and doc (`config_blocks.Field`): `model` (`cmnet_jax.models.SPEC`), `augment`
(`cmnet_jax.augment.SPEC`), `synthetic` (`datasets.synthetic.generator.SETTINGS`), `align`
(`align.runner.SPEC`), `loss` (the registered loss terms' `losses.Option`s, `loss_spec`); the
blocks the training loop reads (`train`, `optim`, `data`) are declared here. `block_specs()`
gathers them and `validate(config)` hands them to `config_blocks.validate`; `configs/common.py`
builds the default config from the same specs (`Spec.defaults`).

>>> TRAIN.defaults()['batch_size'], TRAIN.fields['batch_size'].expected()
(16, 'an int >= 1 (clips per fold per step)')
>>> sorted(block_specs())
['align', 'augment', 'data', 'loss', 'model', 'optim', 'synthetic', 'train']
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any, Mapping, Optional

from cmnet_jax import augment
from cmnet_jax import losses
from cmnet_jax import models
from cmnet_jax.align import runner as align_runner
from cmnet_jax.config_blocks import (BOOL, FLOAT, INT, STR, Check, Field, Rule, Spec, at_least,
                                     non_negative, one_of, positive)
from cmnet_jax import config_blocks
from cmnet_jax.datasets import registry
from cmnet_jax.datasets.synthetic import expressions
from cmnet_jax.datasets.synthetic import generator
from cmnet_jax.models import pretrained

TRAIN = Spec({
    "seed": Field(INT, non_negative, default=0),
    "num_epochs": Field(INT, at_least(1), default=20),
    "steps_per_epoch": Field(INT, at_least(1), default=10),
    "batch_size": Field(INT, at_least(1), "clips per fold per step", default=16),
    "num_devices": Field(INT, non_negative, "local devices to use; 0 = all", default=0),
    "folds_per_device": Field(INT, non_negative, "vmap width; 0 = as many as needed to hold "
                              "every fold at once", default=0),
    "checkpoint_every_epochs": Field(INT, at_least(1), default=5),
    "checkpoints_to_keep": Field(INT, at_least(1), default=2),
    "eval_every_epochs": Field(INT, non_negative, "> 0 adds the labelled 'oracle best-epoch' "
                               "figure; 0 = none", default=0),
    "distributed": Field(BOOL, doc="jax.distributed.initialize() for multi-host runs",
                         default=False),
})

OPTIM = Spec({
    # NaN passes on purpose: tests set it to drive a run into the non-finite-loss stop.
    "learning_rate": Field(FLOAT, Check(lambda v: v > 0 or math.isnan(v), "> 0"), default=1e-3),
    "weight_decay": Field(FLOAT, non_negative, "AdamW", default=1e-4),
    "warmup_steps": Field(INT, non_negative, "linear warm-up, then cosine decay", default=20),
    "grad_clip_norm": Field(FLOAT, positive, "global gradient norm", default=1.0),
})


def data_spec() -> Spec:
  """The `data` block; `name` is a database of `cmnet_jax.datasets.registry` ('synthetic' too)."""
  databases = {name: tuple(info.schemes) for name, info in registry.databases().items()}
  return Spec({
      "name": Field(STR, one_of(*databases), "the database", default="synthetic"),
      "root": Field(STR, doc="folder the user unpacked; '' = the synthetic set under the workdir",
                    default=""),
      "annotation": Field(STR, doc="annotation file; '' = found by its known names under root",
                          default=""),
      "classes": Field(STR, doc="class scheme, e.g. '5class', '3class'; '' = the database's "
                       "default", default=""),
      "num_frames": Field(INT, at_least(2), "frames T sampled per clip", default=9),
      "frame_sampling": Field(STR, one_of("anchored", "uniform"),
                              "'anchored' on onset, apex, offset + even between; 'uniform' = "
                              "even over onset..offset (the apex index varies by clip)",
                              default="anchored"),
      "image_size": Field(INT, at_least(8), "frames resized to image_size x image_size pixels",
                          default=64),
      "train_jitter_copies": Field(INT, at_least(1), "jittered temporal samplings per training "
                                   "clip held on the device", default=4),
      "aligned_root": Field(STR, doc="--mode=align writes the aligned copy here; '' = "
                            "<root>_aligned", default=""),
  }, rules=(Rule(("name", "classes"),
                 lambda n, c: not c or not databases.get(n) or c in databases[n],
                 lambda n, c: f"'' (the default) or a class scheme of {n}: {databases[n]}"),))


def loss_spec(extra_fields: Optional[Mapping[str, Field]] = None) -> Spec:
  """The `loss` block, derived from the loss-term registry (`cmnet_jax.losses.TERMS`).

  A term's coefficient is a number >= 0 (its default the term's `coefficient`); an option is
  checked as its `losses.Option` declares (its `check`, else the kind of its default), so a
  user's registered term has its options checked with no other edit. `extra_fields` adds or
  overrides fields.

  >>> term = losses.register_term(losses.Term('demo', None, options={
  ...     'demo_scale': losses.Option(1.0, 'a scale', check=positive)}))
  >>> spec = loss_spec()
  >>> spec.fields['lambda_demo'].expected(), spec.fields['demo_scale'].expected()
  ('a number >= 0 (coefficient of a loss term)', 'a number > 0 (a scale)')
  >>> losses.unregister_term('demo')
  """
  coefficients = {t.coefficient_key: t.coefficient for t in losses.TERMS.values()}
  fields = {}
  for key, option in losses.config_entries().items():
    if key in coefficients:
      fields[key] = Field(FLOAT, non_negative, "coefficient of a loss term",
                          default=coefficients[key])
    else:
      fields[key] = option.field()
  fields.update(extra_fields or {})
  return Spec(fields)


def block_specs() -> dict[str, Spec]:
  """The spec of every block of a run's config, each from the module that reads it."""
  return {"model": models.SPEC, "data": data_spec(), "synthetic": generator.SETTINGS,
          "augment": augment.SPEC, "loss": loss_spec(), "optim": OPTIM, "train": TRAIN,
          "align": align_runner.SPEC}


def _synthetic_train_clips(subjects: int, clips_per_class: int) -> int:
  return (subjects - 1) * clips_per_class * len(expressions.CLASS_NAMES)


CROSS_RULES = (
    Rule(("data.name", "synthetic.num_subjects"), lambda n, s: n != "synthetic" or s >= 2,
         "at least 2 synthetic subjects (leave-one-subject-out)"),
    Rule(("data.name", "train.batch_size", "synthetic.num_subjects", "synthetic.clips_per_class"),
         lambda n, b, s, c: n != "synthetic" or s < 2 or b <= _synthetic_train_clips(s, c),
         "train.batch_size <= the clips of a fold's training set ((num_subjects - 1) x "
         "clips_per_class x classes)"),
    Rule(("model.pretrained_npz",), lambda p: not p or os.path.isfile(os.path.expanduser(p)),
         "'' (random init) or an existing .npz file; make one with "
         "`python -m cmnet_jax.tools.convert_resnet18`"),
)


def _pretrained_problems(flat: Mapping[str, Any]) -> list[str]:
  """The pretrained file's contents checked before any work (one line), when it will be read."""
  path, widths = flat.get("model.pretrained_npz"), flat.get("model.widths")
  if not path or flat.get("model.encoder") != "resnet18" or widths is None:
    return []
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    return []  # named by the rule above
  st = os.stat(path)
  problem = _pretrained_problem(path, st.st_size, st.st_mtime_ns, tuple(widths))
  return [f"model.pretrained_npz = {flat['model.pretrained_npz']!r}: {problem}; make the file "
          "with `python -m cmnet_jax.tools.convert_resnet18`"] if problem else []


@functools.lru_cache(maxsize=8)
def _pretrained_problem(path: str, size: int, mtime_ns: int, widths: tuple) -> str:
  del size, mtime_ns  # the cache key: the file as it is now
  return pretrained.check_npz(path, widths)


def _device_problems(flat: Mapping[str, Any], device_count: Optional[int]) -> list[str]:
  requested = flat.get("train.num_devices", 0)
  multi_process = flat.get("train.distributed") or os.environ.get("CMNET_DISTRIBUTED") == "1"
  if not requested or multi_process:
    return []
  if device_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    device_count = jax.local_device_count()
  if requested > device_count:
    return [f"train.num_devices = {requested}: expected at most the {device_count} local "
            "devices (0 = all)"]
  return []


def validate(config: Any, *, specs: Optional[Mapping[str, Spec]] = None,
             device_count: Optional[int] = None) -> dict[str, dict[str, Any]]:
  """Checks every block of a run's config and the rules between blocks; returns typed values.

  Args:
    config: a full config (`configs/*.py get_config()`), ConfigDict or nested dict.
    specs: replaces or adds block specs (e.g. `{'loss': loss_spec(extra)}`).
    device_count: local devices for the `train.num_devices` check; default: ask JAX (skipped
      for multi-process runs, where JAX must not start before `jax.distributed.initialize`).

  Raises:
    config_blocks.ConfigError listing every problem found (one line each).
  """
  return config_blocks.validate(
      config, {**block_specs(), **(specs or {})}, rules=CROSS_RULES,
      checks=(_pretrained_problems, lambda flat: _device_problems(flat, device_count)))
