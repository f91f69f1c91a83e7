"""Command-line tools that prepare a run's inputs, e.g.
`python -m cmnet_jax.tools.convert_resnet18` (pretrained ResNet-18 weights)."""
