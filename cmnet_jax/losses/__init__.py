"""CMNet losses as pure JAX functions: smooth Wilcoxon rank-sum, intensity prototype,
Intensity Distillation, cross-entropy, and the factory that combines them.

`LOSSES` maps each term name of the objective ('id', 'wilcoxon', 'ce') to its loss function.
"""
from cmnet_jax.losses.classification import softmax_cross_entropy
from cmnet_jax.losses.distillation import STRATEGIES
from cmnet_jax.losses.distillation import intensity_distillation_loss
from cmnet_jax.losses.distillation import sample_negatives
from cmnet_jax.losses.objective import COEFFICIENT_KEYS
from cmnet_jax.losses.objective import TERM_NAMES
from cmnet_jax.losses.objective import coefficients_from_config
from cmnet_jax.losses.objective import make_objective
from cmnet_jax.losses.prototype import intensity_prototype
from cmnet_jax.losses.prototype import sample_prototype
from cmnet_jax.losses.ranking import RankSumResult
from cmnet_jax.losses.ranking import soft_rank
from cmnet_jax.losses.ranking import wilcoxon_rank_sum
from cmnet_jax.losses.wilcoxon import SEGMENTS
from cmnet_jax.losses.wilcoxon import wilcoxon_loss

LOSSES = {
    "id": intensity_distillation_loss,
    "wilcoxon": wilcoxon_loss,
    "ce": softmax_cross_entropy,
}

__all__ = [
    "COEFFICIENT_KEYS", "LOSSES", "RankSumResult", "SEGMENTS", "STRATEGIES", "TERM_NAMES",
    "coefficients_from_config", "intensity_distillation_loss", "intensity_prototype",
    "make_objective", "sample_negatives", "sample_prototype", "soft_rank",
    "softmax_cross_entropy", "wilcoxon_loss", "wilcoxon_rank_sum",
]
