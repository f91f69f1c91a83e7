"""Shared config blocks, built from the library's declarations.

Every key is declared once, with its default, type, check and documentation, next to the code
that reads it (`cmnet_jax.config_schema.block_specs()`: `models.SPEC`, `augment.SPEC`,
`datasets.synthetic.generator.SETTINGS`, `align.runner.SPEC`, `config_schema.TRAIN` / `OPTIM` /
`data_spec()`, and the registered loss terms' options). The functions here take those defaults;
per-dataset configs override values, never add keys the code does not read.
`python -c "from cmnet_jax import config_schema as s; print(s.block_specs()['model'].fields)"`
shows each key's declaration.

Blocks: `model`, `data`, `synthetic`, `augment`, `loss`, `optim`, `train`, `align`.
"""
import ml_collections

from cmnet_jax import augment
from cmnet_jax import config_schema
from cmnet_jax import models
from cmnet_jax.align import runner as align_runner
from cmnet_jax.datasets.synthetic import generator

# The paper's network (ResNet-18 encoders) over the declared small CPU defaults.
PAPER_SCALE = {
    "encoder": "resnet18",
    "widths": (64, 128, 256, 512),
    "feature_dim": 512,
    "embedding_dim": 128,
    "lstm_hidden": 128,
    "pool_grid": 1,                  # torchvision's global average pool
}


def model_config(scale: str = "small") -> ml_collections.ConfigDict:
  """CMNet network. `scale` is 'small' (CPU, the declared defaults) or 'paper' (ResNet-18)."""
  c = ml_collections.ConfigDict(models.SPEC.defaults())
  if scale == "paper":
    c.update(PAPER_SCALE)
  elif scale != "small":
    raise ValueError(f"model scale {scale!r}: expected 'small' or 'paper'")
  return c


def augment_config() -> ml_collections.ConfigDict:
  """Positive views for the ID loss (per frame) and clip-level training augmentation."""
  return ml_collections.ConfigDict(augment.SPEC.defaults())


def loss_config() -> ml_collections.ConfigDict:
  """Coefficients and hyper-parameters of the objective, derived from the registered loss terms.

  Every key comes from `cmnet_jax.losses.TERMS` (each term's `lambda_*` coefficient and its
  options, documented in its declaration, e.g. `cmnet_jax/losses/cmnet_terms.py`) and
  `losses.SHARED_OPTIONS`; `python -c "from cmnet_jax import losses; print(losses.terms.describe())"`
  lists them. Register a new term before building the config and its keys appear here.
  """
  return ml_collections.ConfigDict(config_schema.loss_spec().defaults())


def data_config(name: str = "synthetic") -> ml_collections.ConfigDict:
  """Which database, where it is, and how clips are sampled into arrays."""
  c = ml_collections.ConfigDict(config_schema.data_spec().defaults())
  c.name = name
  return c


def align_config() -> ml_collections.ConfigDict:
  """`--mode=align` (cmnet_jax/align): face detection, 68 landmarks, one similarity per clip."""
  return ml_collections.ConfigDict(align_runner.SPEC.defaults())


def synthetic_config() -> ml_collections.ConfigDict:
  """The built-in synthetic micro-expression generator (the default dataset)."""
  return ml_collections.ConfigDict(generator.SETTINGS.defaults())


def optim_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(config_schema.OPTIM.defaults())


def train_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(config_schema.TRAIN.defaults())


def base_config(dataset: str = "synthetic", scale: str = "small") -> ml_collections.ConfigDict:
  """Every block with its defaults; dataset configs override values."""
  c = ml_collections.ConfigDict()
  c.model = model_config(scale)
  c.data = data_config(dataset)
  c.synthetic = synthetic_config()
  c.augment = augment_config()
  c.loss = loss_config()
  c.optim = optim_config()
  c.train = train_config()
  c.align = align_config()
  return c


def real_config(dataset: str, classes: str, arg: str) -> ml_collections.ConfigDict:
  """Paper-scale settings for a real database; `arg='quick'` is a minutes-long smoke run."""
  c = base_config(dataset, "paper")
  c.model.gate_norm = "softmax"  # as configs/synthetic.py (measured there only; docs/results.md)
  c.data.classes = classes
  c.data.image_size = 112
  c.augment.crop_padding = 8
  c.train.batch_size = 16
  c.train.num_epochs = 60
  c.train.steps_per_epoch = 16
  c.train.checkpoint_every_epochs = 10
  c.optim.learning_rate = 3e-4
  c.optim.warmup_steps = 100
  if arg == "quick":
    c.model = model_config("small")
    c.data.image_size = 64
    c.augment.crop_padding = 4
    c.train.num_epochs = 2
    c.train.steps_per_epoch = 5
    c.train.batch_size = 8
    c.train.checkpoint_every_epochs = 1
    c.optim.warmup_steps = 2
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of configs/{dataset}.py (known: 'quick')")
  c.lock()
  return c
