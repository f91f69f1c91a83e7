"""Specs of the config blocks the training loop reads: `train`, `optim`, `data` and `loss`.

The other blocks' specs live with the code that reads them (`models.SPEC`, `augment.SPEC`,
`datasets.synthetic.generator.SETTINGS`); `config_blocks.validate` checks them all.

>>> from configs import tiny
>>> config_blocks.read_block(tiny.get_config().train, TRAIN, 'train')['batch_size']
4
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from cmnet_jax import config_blocks
from cmnet_jax.config_blocks import (BOOL, FLOAT, INT, STR, Check, Field, Rule, Spec, at_least,
                                     in_range, non_negative, one_of, positive)


TRAIN = Spec({
    "seed": Field(INT, non_negative),
    "num_epochs": Field(INT, at_least(1)),
    "steps_per_epoch": Field(INT, at_least(1)),
    "batch_size": Field(INT, at_least(1), "clips per fold per step"),
    "num_devices": Field(INT, non_negative, "local devices to use; 0 = all"),
    "folds_per_device": Field(INT, non_negative, "0 = as many as needed"),
    "checkpoint_every_epochs": Field(INT, at_least(1)),
    "checkpoints_to_keep": Field(INT, at_least(1)),
    "eval_every_epochs": Field(INT, non_negative, "0 = no oracle figure"),
    "distributed": Field(BOOL),
})

OPTIM = Spec({
    # NaN passes on purpose: tests set it to drive a run into the non-finite-loss stop.
    "learning_rate": Field(FLOAT, Check(lambda v: v > 0 or math.isnan(v), "> 0")),
    "weight_decay": Field(FLOAT, non_negative),
    "warmup_steps": Field(INT, non_negative),
    "grad_clip_norm": Field(FLOAT, positive, "global gradient norm"),
})


def data_spec() -> Spec:
  """The `data` block; `name` is 'synthetic' or a database of `cmnet_jax.datasets.registry`."""
  from cmnet_jax.datasets import registry  # pylint: disable=g-import-not-at-top
  databases = {name: tuple(info.schemes) for name, info in registry.databases().items()}
  return Spec({
      "name": Field(STR, one_of("synthetic", *databases)),
      "root": Field(STR),
      "annotation": Field(STR),
      "classes": Field(STR),
      "num_frames": Field(INT, at_least(2), "frames T sampled per clip"),
      "frame_sampling": Field(STR, one_of("anchored", "uniform")),
      "image_size": Field(INT, at_least(8), "pixels"),
      "train_jitter_copies": Field(INT, at_least(1)),
      "aligned_root": Field(STR, doc="'' = <root>_aligned (--mode=align)"),
  }, rules=(Rule(("name", "classes"),
                 lambda n, c: not c or not databases.get(n) or c in databases[n],
                 lambda n, c: f"'' (the default) or a class scheme of {n}: {databases[n]}"),))


def _loss_checks(losses: Any) -> dict[str, Field]:
  """Checks beyond the type for the options of CMNet's terms (cmnet_jax/losses/cmnet_terms.py)."""
  return {
      "id_strategy": Field(STR, one_of(*losses.STRATEGIES)),
      "id_num_negatives": Field(INT, at_least(1)),
      "id_temperature": Field(FLOAT, positive, "InfoNCE temperature"),
      "id_sampling_temperature": Field(FLOAT, positive),
      "w_margin": Field(FLOAT, in_range(0, 1), "margin on the rank-sum p-value"),
      "w_temperature": Field(FLOAT, non_negative, "0 = exact ranks"),
      "w_segments": Field(STR, one_of(*losses.SEGMENTS)),
      "w_penalty": Field(STR, one_of(*losses.PENALTIES)),
      "order_temperature": Field(FLOAT, positive, "smooth-rank temperature"),
      "preset": Field(STR, one_of("", *sorted(losses.PRESETS))),
      "w_draws_per_frame": Field(INT, at_least(1)),
      "w_chunk_size": Field(INT, non_negative, "0 = pairwise form"),
      "prototype_epsilon": Field(FLOAT, in_range(0, 1, hi_open=True)),
      "prototype_sigma_floor": Field(FLOAT, non_negative),
      "label_smoothing": Field(FLOAT, in_range(0, 1)),
  }


_KINDS = ((bool, BOOL), (int, INT), (float, FLOAT), (str, STR))


def loss_spec(extra_fields: Optional[Mapping[str, Field]] = None) -> Spec:
  """The `loss` block, derived from the loss-term registry (`cmnet_jax.losses.TERMS`).

  Every registered key is checked: a term's coefficient is a number >= 0; an option uses its
  `Option.field` if the registry gives one, else a check of ours (CMNet's options), else the
  type of its default.
  `extra_fields` adds or overrides fields.

  >>> from cmnet_jax import losses
  >>> term = losses.register_term(losses.Term('demo', None, options={
  ...     'demo_scale': losses.Option(1.0, 'a scale')}))
  >>> spec = loss_spec({'demo_scale': Field(FLOAT, positive)})
  >>> spec.fields['lambda_demo'].expected(), spec.fields['demo_scale'].expected()
  ('a number >= 0 (coefficient of a loss term)', 'a number > 0')
  >>> losses.unregister_term('demo')
  """
  from cmnet_jax import losses  # pylint: disable=g-import-not-at-top
  coefficients = {t.coefficient_key for t in losses.TERMS.values()}
  checks, fields = _loss_checks(losses), {}
  for key, option in losses.config_entries().items():
    if key in coefficients:
      fields[key] = Field(FLOAT, non_negative, "coefficient of a loss term")
    elif isinstance(getattr(option, "field", None), Field):
      fields[key] = option.field
    elif key in checks:
      fields[key] = checks[key]
    else:  # the kind of the default (exact type: a bool default is not an int option)
      kind = next((k for t, k in _KINDS if type(option.default) is t), None)
      if kind:
        fields[key] = Field(kind)
  fields.update(extra_fields or {})
  return Spec(fields)
