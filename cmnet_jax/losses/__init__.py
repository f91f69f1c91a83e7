"""CMNet losses as pure JAX functions: smooth Wilcoxon rank-sum, intensity prototype,
Intensity Distillation, cross-entropy, the registry of objective terms and the factory that
combines them.

`TERMS` maps each registered term name ('id', 'wilcoxon', 'ce', and any a user registers with
`register_term`) to its `Term` declaration; the config, the objective and the training step
derive from it (see `cmnet_jax.losses.terms`).
"""
from cmnet_jax.losses.classification import softmax_cross_entropy
from cmnet_jax.losses.distillation import STRATEGIES
from cmnet_jax.losses.distillation import frame_differences
from cmnet_jax.losses.distillation import intensity_distillation_loss
from cmnet_jax.losses.distillation import normalize_differences
from cmnet_jax.losses.distillation import sample_negatives
from cmnet_jax.losses.objective import make_objective
from cmnet_jax.losses.order import order_loss
from cmnet_jax.losses.order import soft_spearman
from cmnet_jax.losses.prototype import intensity_prototype
from cmnet_jax.losses.prototype import sample_prototype
from cmnet_jax.losses.ranking import RankSumResult
from cmnet_jax.losses.ranking import soft_rank
from cmnet_jax.losses.ranking import wilcoxon_rank_sum
from cmnet_jax.losses.terms import Option
from cmnet_jax.losses.terms import PRESETS
from cmnet_jax.losses.terms import SHARED_OPTIONS
from cmnet_jax.losses.terms import StepInputs
from cmnet_jax.losses.terms import TERMS
from cmnet_jax.losses.terms import Term
from cmnet_jax.losses.terms import coefficients_from_config
from cmnet_jax.losses.terms import config_entries
from cmnet_jax.losses.terms import register_preset
from cmnet_jax.losses.terms import register_term
from cmnet_jax.losses.terms import resolve_preset
from cmnet_jax.losses.terms import unregister_term
from cmnet_jax.losses.wilcoxon import PENALTIES
from cmnet_jax.losses.wilcoxon import SEGMENTS
from cmnet_jax.losses.wilcoxon import critical_z
from cmnet_jax.losses.wilcoxon import wilcoxon_loss
from cmnet_jax.losses import cmnet_terms  # registers 'id', 'wilcoxon', 'ce'  # noqa: F401
from cmnet_jax.losses import scale  # registers 'scale' (off by default)  # noqa: F401
from cmnet_jax.losses.scale import scale_loss

__all__ = [
    "Option", "PENALTIES", "PRESETS", "RankSumResult", "SEGMENTS", "SHARED_OPTIONS", "STRATEGIES", "StepInputs", "TERMS",
    "Term", "coefficients_from_config", "config_entries", "critical_z", "frame_differences",
    "intensity_distillation_loss", "intensity_prototype", "make_objective",
    "normalize_differences", "order_loss", "register_preset", "register_term", "resolve_preset", "sample_negatives",
    "sample_prototype", "scale_loss", "soft_rank", "soft_spearman", "softmax_cross_entropy",
    "unregister_term", "wilcoxon_loss", "wilcoxon_rank_sum",
]
