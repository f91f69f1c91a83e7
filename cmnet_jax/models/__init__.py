"""CMNet in Flax Linen: `build(model_config, num_classes)` returns the module.

Linen rather than NNX: its parameters are a plain pytree, so per-fold stacking (vmap), pmap and
Orbax checkpoints need nothing special.

>>> import jax, jax.numpy as jnp
>>> cfg = dict(SPEC.defaults(), widths=(8,), feature_dim=8, embedding_dim=4, lstm_hidden=4)
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

# Every key of the `model` block, declared once (configs/common.py model_config builds the block
# from these defaults, the small CPU scale; its 'paper' scale overrides some), read by `build`,
# `load_pretrained` and the training step (input_mode, intensity_source).
SPEC = cb.Spec({
    "encoder": cb.Field(cb.STR, cb.one_of(*sorted(ENCODERS)), "ICE and FFE encoder",
                        default="small_cnn"),
    "widths": cb.Field(cb.INTS, cb.each(cb.positive), "channels per encoder stage",
                       default=(16, 32, 64)),
    "feature_dim": cb.Field(cb.INT, cb.positive, "FFE output size f_t (= extend output size)",
                            default=64),
    "embedding_dim": cb.Field(cb.INT, cb.positive, "ICE projection used by the ID loss",
                              default=64),
    # The key keeps its recorded name (config.json of every existing workdir, checkpoints'
    # parameter scope 'lstm'); the temporal model is the LSTM of `cmnet.CMNet`.
    "lstm_hidden": cb.Field(cb.INT, cb.positive, "state size of the temporal model (LSTM)",
                            default=64),
    "norm_groups": cb.Field(cb.INT, cb.positive, "GroupNorm groups (no cross-fold statistics)",
                            default=8),
    "dropout": cb.Field(cb.FLOAT, cb.in_range(0, 1, hi_open=True), "a rate, before the "
                        "classifier", default=0.2),
    "input_mode": cb.Field(cb.STR, cb.one_of(*INPUT_MODES), "see cmnet.prepare_inputs",
                           default="onset_difference"),
    "dtype": cb.Field(cb.STR, cb.one_of(*DTYPES), "compute dtype", default="float32"),
    "conv_impl": cb.Field(cb.STR, cb.one_of(*CONV_IMPLS),
                          "'auto' = im2col on CPU, XLA's convolution on GPU/TPU; 'onednn' = CPU, "
                          "opt-in (requirements-cpu.txt + a C++ compiler)", default="auto"),
    "pool_grid": cb.Field(cb.INT, cb.at_least(1), "encoder head pools to a grid x grid map "
                          "(keeps which face region moved; 1 = global average pool)", default=4),
    "pretrained_npz": cb.Field(cb.STR, doc="torchvision-named ResNet-18 .npz; '' = random init",
                               default=""),
    "pretrained_into": cb.Field(cb.STR, cb.one_of(*PRETRAINED_INTO), default="both"),
    "intensity_source": cb.Field(cb.STR, cb.one_of(*INTENSITY_SOURCES),
                                 "s_t in the fusion: 'learned' (squeeze); "
                                 "'oracle' = the synthetic generator's true intensity; "
                                 "'tent' = a fixed positional tent (the position prior); "
                                 "'constant' = 1 for every frame (no gate)", default="learned"),
    "gate_norm": cb.Field(cb.STR, cb.one_of(*GATE_NORMS),
                          "'minmax' = the learned s rescaled to [0, 1] per clip in the fusion; "
                          "'softmax' = exp((s_t - max_t s) / gate_temperature), the strongest "
                          "frame 1 (onset frame left out; the losses still see s)",
                          default="none"),
    "gate_temperature": cb.Field(cb.FLOAT, cb.positive, "tau of gate_norm='softmax'",
                                 default=0.1),
    "train_gate": cb.Field(cb.STR, cb.one_of("learned", "prototype"),
                           "what the fusion sees in training: the learned s ('learned') or, "
                           "teacher forcing, the intensity prototype's mean at the clip's "
                           "annotated apex ('prototype'); both through gate_norm; evaluation "
                           "and predict always use the learned s", default="learned"),
    "difference_gain": cb.Field(cb.BOOL, doc="match each frame's mean brightness to the onset "
                                "frame's before the onset difference (a global illumination "
                                "drift is a clock)", default=False),
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
               conv_impl=c["conv_impl"], pool_grid=c["pool_grid"], gate_norm=c["gate_norm"],
               gate_temperature=c["gate_temperature"], difference_gain=c["difference_gain"])
