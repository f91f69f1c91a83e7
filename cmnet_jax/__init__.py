"""cmnet_jax: a JAX/Flax implementation of CMNet (Contrastive Magnification Network, AAAI 2023)."""

__version__ = "0.1.0"
