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

from cmnet_jax import config_blocks as cb
from cmnet_jax.models.cmnet import (CMNet, CMNetOutput, GATE_NORMS, INPUT_MODES,
                                   INTENSITY_SOURCES, prepare_inputs)
from cmnet_jax.models.encoders import (CONV_IMPLS, ENCODERS, RESNET18_BLOCKS, ResNet18, SmallCNN,
                                       im2col_conv)
from cmnet_jax.models.pretrained import load_pretrained, load_resnet18_npz

__all__ = ["CMNet", "CMNetOutput", "ResNet18", "SmallCNN", "build", "im2col_conv",
           "load_pretrained", "load_resnet18_npz", "prepare_inputs"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
PRETRAINED_INTO = ("ice", "ffe", "both")

# Every key of the `model` block (configs/common.py model_config), read by `build`.
SPEC = cb.Spec({
    "encoder": cb.Field(cb.STR, cb.one_of(*sorted(ENCODERS))),
    "widths": cb.Field(cb.INTS, cb.each(cb.positive), "channels per encoder stage"),
    "feature_dim": cb.Field(cb.INT, cb.positive),
    "embedding_dim": cb.Field(cb.INT, cb.positive),
    "lstm_hidden": cb.Field(cb.INT, cb.positive),
    "norm_groups": cb.Field(cb.INT, cb.positive, "GroupNorm groups"),
    "dropout": cb.Field(cb.FLOAT, cb.in_range(0, 1, hi_open=True), "a rate"),
    "input_mode": cb.Field(cb.STR, cb.one_of(*INPUT_MODES)),
    "dtype": cb.Field(cb.STR, cb.one_of(*DTYPES)),
    "conv_impl": cb.Field(cb.STR, cb.one_of(*CONV_IMPLS)),
    "pool_grid": cb.Field(cb.INT, cb.at_least(1)),
    "pretrained_npz": cb.Field(cb.STR, doc="'' = random init"),
    "pretrained_into": cb.Field(cb.STR, cb.one_of(*PRETRAINED_INTO)),
    "intensity_source": cb.Field(cb.STR, cb.one_of(*INTENSITY_SOURCES),
                                 "'oracle' = the synthetic generator's true intensity; "
                                 "'tent' = a fixed positional tent (the position prior); "
                                 "'constant' = 1 for every frame (no gate)"),
    "gate_norm": cb.Field(cb.STR, cb.one_of(*GATE_NORMS),
                          "'minmax' = the learned s rescaled to [0, 1] per clip in the fusion "
                          "(onset frame left out)"),
}, rules=(
    cb.Rule(("widths", "norm_groups"), lambda ws, g: all(w % g == 0 for w in ws),
            "every width divisible by model.norm_groups"),
    cb.Rule(("encoder", "widths"),
            lambda e, ws: e != "resnet18" or len(ws) == len(RESNET18_BLOCKS),
            f"{len(RESNET18_BLOCKS)} widths (one per stage) for the 'resnet18' encoder"),
    cb.Rule(("pretrained_npz", "encoder"), lambda p, e: not p or e == "resnet18",
            "model.encoder = 'resnet18' when pretrained weights are set"),
    cb.Rule(("conv_impl",), lambda c: c != "onednn" or _onednn_unavailable() is None,
            "oneDNN usable for model.conv_impl='onednn' (pip install -r requirements-cpu.txt "
            "and a C++ compiler; `python -c \"from cmnet_jax.models import onednn; "
            "print(onednn.unavailable())\"` says what is missing)"),
))


def _onednn_unavailable() -> str | None:
  from cmnet_jax.models import onednn  # pylint: disable=g-import-not-at-top
  return onednn.unavailable()


def build(model_config: Any, num_classes: int) -> CMNet:
  """CMNet from the `model` config block (every key of `SPEC` is read and checked here).

  Args:
    model_config: `configs.common.model_config(...)` (or a dict with the same keys).
    num_classes: classifier outputs.

  Returns:
    An (unbound) `CMNet`; pretrained weights are applied to params with `load_pretrained`.

  Raises:
    config_blocks.ConfigError naming each bad `model.<key>` (a KeyError too if one is missing).
  """
  c = cb.read_block(model_config, SPEC, "model")
  if num_classes < 1:
    raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
  return CMNet(num_classes=num_classes, encoder=c["encoder"], widths=c["widths"],
               feature_dim=c["feature_dim"], embedding_dim=c["embedding_dim"],
               lstm_hidden=c["lstm_hidden"], norm_groups=c["norm_groups"], dropout=c["dropout"],
               input_mode=c["input_mode"], dtype=DTYPES[c["dtype"]],
               conv_impl=c["conv_impl"], pool_grid=c["pool_grid"], gate_norm=c["gate_norm"])
