"""CMNet's objective terms, declared once: Intensity Distillation, Wilcoxon rank-sum, cross-entropy.

Each is a `Term` (see `cmnet_jax.losses.terms`): how it reads its inputs from the training step,
the `loss` config keys it owns with their defaults, and its default coefficient. The formulas
are in the loss functions' docstrings and docs/method.md.
"""
from __future__ import annotations

import jax.numpy as jnp

from cmnet_jax.config_blocks import at_least, in_range, non_negative, one_of, positive
from cmnet_jax.losses.classification import softmax_cross_entropy
from cmnet_jax.losses.distillation import STRATEGIES
from cmnet_jax.losses.distillation import frame_differences
from cmnet_jax.losses.distillation import intensity_distillation_loss
from cmnet_jax.losses.distillation import sample_negatives
from cmnet_jax.losses.order import order_loss
from cmnet_jax.losses.prototype import sample_prototype
from cmnet_jax.losses.terms import Option
from cmnet_jax.losses.terms import Term
from cmnet_jax.losses.terms import register_preset
from cmnet_jax.losses.terms import register_term
from cmnet_jax.losses.wilcoxon import PENALTIES
from cmnet_jax.losses.wilcoxon import SEGMENTS
from cmnet_jax.losses.wilcoxon import wilcoxon_loss


def _intensity_distillation(step, o):
  """InfoNCE of each frame's ICE embedding against its photometric view and sampled negatives."""
  mask = sample_negatives(step.key("negatives"), frame_differences(step.clips),
                          strategy=o["id_strategy"], num_negatives=o["id_num_negatives"],
                          temperature=o["id_sampling_temperature"],
                          normalize=o["id_normalize_differences"])
  z = step.output.intensity_embeddings
  return intensity_distillation_loss(z, step.positive_embeddings(), z, mask,
                                     temperature=o["id_temperature"])


def _wilcoxon(step, o):
  """Rank-sum test of the clip's intensities s_t against draws from its prototype."""
  mean, std = step.prototype()
  batch, num_frames = mean.shape
  draws = sample_prototype(step.key("prototype"), mean[:, None], std[:, None],
                           (batch, o["w_draws_per_frame"], num_frames))
  loss = wilcoxon_loss(step.output.intensities.astype(jnp.float32), draws,
                       margin=o["w_margin"], temperature=o["w_temperature"],
                       penalty=o["w_penalty"], segments=o["w_segments"], apex_index=step.apex,
                       chunk_size=o["w_chunk_size"] or None)
  return loss, {"active": jnp.mean((loss > 0).astype(jnp.float32))}


def _order(step, o):
  """1 - soft Spearman rho between the clip's intensities and its prototype mean, over time."""
  mean, _ = step.prototype()
  return order_loss(step.output.intensities.astype(jnp.float32), mean,
                    temperature=o["order_temperature"])


def _cross_entropy(step, o):
  return softmax_cross_entropy(step.output.logits, step.labels,
                               label_smoothing=o["label_smoothing"])


ID = register_term(Term(
    "id", _intensity_distillation, coefficient=0.1, coefficient_key="lambda_id",
    doc="Intensity Distillation (InfoNCE on ICE embeddings)",
    options={
        "id_strategy": Option("difference", "negatives: 'all' | 'uniform' | 'difference'",
                              check=one_of(*STRATEGIES)),
        "id_num_negatives": Option(4, "K negatives per anchor ('uniform', 'difference')",
                                   check=at_least(1)),
        "id_temperature": Option(0.1, "InfoNCE temperature tau", check=positive),
        "id_sampling_temperature": Option(1.0, "softmax temperature of 'difference' sampling",
                                          check=positive),
        "id_normalize_differences": Option(
            True, "'difference': divide frame differences by the clip's mean difference first "
            "(scale-free; False = the raw mean absolute pixel difference)"),
    }))

WILCOXON = register_term(Term(
    "wilcoxon", _wilcoxon, coefficient=0.5, coefficient_key="lambda_w",
    doc="Wilcoxon rank-sum calibration of s_t against the intensity prototype",
    options={
        "w_margin": Option(0.05, "m: clips whose test p-value is below m are penalised",
                           check=in_range(0, 1)),
        "w_penalty": Option("z_hinge", "'z_hinge' max(0, |z| - z_crit(m)) (gradient wherever "
                            "the test rejects) | 'p_hinge' max(0, m - p) (the paper's form)",
                            check=one_of(*PENALTIES)),
        "w_temperature": Option(0.1, "smooth-rank temperature (inputs standardised); 0 = exact "
                                "ranks", check=non_negative),
        "w_segments": Option("whole", "'whole' | 'split' (rising and falling segments apart)",
                             check=one_of(*SEGMENTS)),
        "w_draws_per_frame": Option(1, "prototype draws per frame position (R); T * R per clip",
                                    check=at_least(1)),
        "w_chunk_size": Option(0, "0 = pairwise O(T^2) form; e.g. 128 for long clips",
                               check=non_negative),
    },
    diagnostic=True))  # cheap; its 'active' share is a diagnostic of every run

ORDER = register_term(Term(
    "order", _order, coefficient=1.0,
    doc="order calibration: 1 - soft Spearman(s_t, prototype mean) over the frames of a clip",
    options={"order_temperature": Option(0.1, "smooth-rank temperature, in standard "
                                         "deviations of the clip's intensities",
                                         check=positive)}))

CE = register_term(Term(
    "ce", _cross_entropy, coefficient=1.0, coefficient_key="lambda_ce",
    doc="softmax cross-entropy of the expression classes",
    options={"label_smoothing": Option(0.0, "label smoothing of the cross-entropy targets",
                                       check=in_range(0, 1))}))

# The objective as the paper states it: ID with raw pixel-difference sampling, the p-value hinge,
# no order term (docs/method.md says what this form does and does not constrain).
register_preset("paper", {"lambda_id": 0.1, "lambda_w": 0.1, "lambda_order": 0.0,
                          "w_penalty": "p_hinge", "id_normalize_differences": False})
