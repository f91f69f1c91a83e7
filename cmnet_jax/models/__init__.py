"""CMNet in Flax Linen: `build(model_config, num_classes)` returns the module.

Linen rather than NNX: its parameters are a plain pytree, so per-fold stacking (vmap), pmap and
Orbax checkpoints need nothing special.

>>> import jax, jax.numpy as jnp
>>> from configs.common import model_config
>>> cfg = model_config('small')
>>> cfg.widths, cfg.feature_dim, cfg.embedding_dim, cfg.lstm_hidden = (8,), 8, 4, 4
>>> model = build(cfg, num_classes=3)
>>> clips = jnp.zeros((2, 5, 16, 16, 3), jnp.uint8)
>>> rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
>>> variables = jax.eval_shape(model.init, rngs, clips)  # shapes only; drop eval_shape to run
>>> out = jax.eval_shape(lambda v: model.apply(v, clips, train=True, rngs=rngs), variables)
>>> out.logits.shape, out.intensities.shape, out.intensity_embeddings.shape, out.features.shape
((2, 3), (2, 5), (2, 5, 4), (2, 5, 8))
>>> branch = lambda v: model.apply(v, clips, method='intensity_branch')
>>> s, z = jax.eval_shape(branch, variables)
>>> s.shape, z.shape
((2, 5), (2, 5, 4))
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from cmnet_jax.models.cmnet import CMNet, CMNetOutput, INPUT_MODES, prepare_inputs
from cmnet_jax.models.encoders import ENCODERS, ResNet18, SmallCNN, conv_fn, im2col_conv
from cmnet_jax.models.pretrained import load_pretrained, load_resnet18_npz

__all__ = ["CMNet", "CMNetOutput", "ResNet18", "SmallCNN", "build", "im2col_conv",
           "load_pretrained", "load_resnet18_npz", "prepare_inputs"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_KEYS = ("encoder", "widths", "feature_dim", "embedding_dim", "lstm_hidden", "norm_groups",
         "dropout", "input_mode", "dtype", "conv_impl", "pool_grid", "pretrained_npz",
         "pretrained_into")


def _read(model_config: Any) -> dict[str, Any]:
  values = {}
  for key in _KEYS:
    try:
      values[key] = model_config[key]
    except KeyError:
      raise KeyError(f"model config: missing key {key!r} (see configs/common.py model_config)")
  return values


def build(model_config: Any, num_classes: int) -> CMNet:
  """CMNet from the `model` config block (every key is read and checked here).

  Args:
    model_config: `configs.common.model_config(...)` (or a dict with the same keys).
    num_classes: classifier outputs.

  Returns:
    An (unbound) `CMNet`; pretrained weights are applied to params with `load_pretrained`.
  """
  c = _read(model_config)
  if c["encoder"] not in ENCODERS:
    raise ValueError(f"model.encoder: expected one of {sorted(ENCODERS)}, got {c['encoder']!r}")
  if c["input_mode"] not in INPUT_MODES:
    raise ValueError(f"model.input_mode: expected one of {INPUT_MODES}, got {c['input_mode']!r}")
  if c["dtype"] not in DTYPES:
    raise ValueError(f"model.dtype: expected one of {sorted(DTYPES)}, got {c['dtype']!r}")
  if int(c["pool_grid"]) < 1:
    raise ValueError(f"model.pool_grid: expected >= 1, got {c['pool_grid']}")
  conv_fn(c["conv_impl"])  # raises the model.conv_impl error now, not at the first apply
  if c["pretrained_into"] not in ("ice", "ffe", "both"):
    raise ValueError("model.pretrained_into: expected 'ice', 'ffe' or 'both', got "
                     f"{c['pretrained_into']!r}")
  if c["pretrained_npz"] and c["encoder"] != "resnet18":
    raise ValueError("model.pretrained_npz is set but model.encoder is "
                     f"{c['encoder']!r}; pretrained weights need 'resnet18'")
  widths = tuple(int(w) for w in c["widths"])
  bad = [w for w in widths if w % c["norm_groups"]]
  if not widths or bad:
    raise ValueError(f"model.widths {widths}: every width must be divisible by model.norm_groups"
                     f"={c['norm_groups']}")
  if not 0.0 <= c["dropout"] < 1.0:
    raise ValueError(f"model.dropout: expected a rate in [0, 1), got {c['dropout']}")
  if num_classes < 1:
    raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
  return CMNet(num_classes=num_classes, encoder=c["encoder"], widths=widths,
               feature_dim=c["feature_dim"], embedding_dim=c["embedding_dim"],
               lstm_hidden=c["lstm_hidden"], norm_groups=c["norm_groups"], dropout=c["dropout"],
               input_mode=c["input_mode"], dtype=DTYPES[c["dtype"]],
               conv_impl=c["conv_impl"], pool_grid=int(c["pool_grid"]))
