"""Shared config blocks. Every key the library reads is listed here; per-dataset configs
override values, never add keys the code does not read.

Blocks: `model`, `data`, `synthetic`, `augment`, `loss`, `optim`, `train`, `align`.
"""
import ml_collections


def model_config(scale: str = "small") -> ml_collections.ConfigDict:
  """CMNet network. `scale` is 'small' (CPU) or 'paper' (ResNet-18 encoders)."""
  c = ml_collections.ConfigDict()
  if scale == "paper":
    c.encoder = "resnet18"           # 'resnet18' | 'small_cnn'
    c.widths = (64, 128, 256, 512)   # channels per encoder stage
    c.feature_dim = 512              # FFE output size f_t (= extend output size)
    c.embedding_dim = 128            # ICE projection used by the ID loss
    c.lstm_hidden = 128
    c.pool_grid = 1                  # torchvision's global average pool
  else:
    c.encoder = "small_cnn"
    c.widths = (16, 32, 64)
    c.feature_dim = 64
    c.embedding_dim = 64
    c.lstm_hidden = 64
    c.pool_grid = 4                  # 4x4 grid: keeps which face region moved (see encoders._Head)
  c.norm_groups = 8                  # GroupNorm groups (no cross-fold statistics)
  c.dropout = 0.2                    # before the classifier
  c.input_mode = "onset_difference"  # 'raw' | 'onset_difference' | 'both'
  c.dtype = "float32"                # compute dtype: 'float32' | 'bfloat16'
  c.conv_impl = "auto"               # 'auto' (im2col on CPU, XLA conv on GPU/TPU) | 'xla' | 'im2col'
  #                                    | 'onednn' (CPU, opt-in: requirements-cpu.txt + a C++ compiler)
  c.pretrained_npz = ""              # torchvision-named ResNet-18 .npz; '' = random init
  c.pretrained_into = "both"         # 'ice' | 'ffe' | 'both'
  c.intensity_source = "learned"     # s_t in the fusion: 'learned' (squeeze) | 'oracle' (the
                                     # synthetic generator's true intensity) | 'tent' (a fixed
                                     # positional tent, the position prior) | 'constant' (1: no
                                     # gate); experiment arms
  c.gate_norm = "none"               # learned s_t in the fusion: 'none' (as is) | 'minmax' (per clip
                                     # rescaled to [0, 1]; the losses still see s_t)
  return c


def augment_config() -> ml_collections.ConfigDict:
  """Positive views for the ID loss (per frame) and clip-level training augmentation."""
  c = ml_collections.ConfigDict()
  c.brightness = 0.4
  c.contrast = 0.4
  c.saturation = 0.4
  c.hue = 0.1
  c.grayscale_p = 0.2
  c.blur_kernel = 5
  c.blur_sigma = (0.1, 2.0)
  c.crop_padding = 4
  c.flip = True
  c.max_rotation_deg = 5.0
  return c


def loss_config() -> ml_collections.ConfigDict:
  """Coefficients and hyper-parameters of the objective, derived from the registered loss terms.

  Every key comes from `cmnet_jax.losses.TERMS` (each term's `lambda_*` coefficient and its
  options, documented in its declaration, e.g. `cmnet_jax/losses/cmnet_terms.py`) and
  `losses.SHARED_OPTIONS`; `python -c "from cmnet_jax import losses; print(losses.terms.describe())"`
  lists them. Register a new term before building the config and its keys appear here.
  """
  from cmnet_jax import losses  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict()
  for key, option in losses.config_entries().items():
    c[key] = option.default
  return c


def data_config(name: str = "synthetic") -> ml_collections.ConfigDict:
  """Which database, where it is, and how clips are sampled into arrays."""
  c = ml_collections.ConfigDict()
  c.name = name                      # 'synthetic' | 'casme2' | 'samm' | 'smic' | 'casme3' | 'megc2019'
  c.root = ""                        # folder the user unpacked ('' = synthetic cache under the workdir)
  c.annotation = ""                  # annotation file; '' = found by its known names under root
  c.classes = ""                     # class scheme, e.g. '5class', '3class'; '' = the database default
  c.num_frames = 9                   # T, anchored on onset/apex/offset (docs/method.md)
  c.frame_sampling = "anchored"      # 'anchored' (onset, apex, offset + even between) | 'uniform'
                                     # (even over onset..offset: the apex index varies by clip)
  c.image_size = 64                  # frames resized to image_size x image_size
  c.train_jitter_copies = 4          # jittered temporal samplings per training clip held on device
  c.aligned_root = ""                # --mode=align writes the aligned copy here; '' = <root>_aligned
  return c


def align_config() -> ml_collections.ConfigDict:
  """`--mode=align` (cmnet_jax/align): face detection, 68 landmarks, one similarity per clip."""
  c = ml_collections.ConfigDict()
  c.size = 224                       # aligned crops are size x size pixels
  c.margin = 0.1                     # crop widened by this fraction of the face box on each side
  c.fallback = "centre"              # no face found: 'centre' square crop | 'whole' frame resized
  c.redetect = False                 # True = landmarks on every frame (onset's transform if none)
  c.detect_width = 640               # detect on a copy this wide (0 = full size)
  c.jpeg_quality = 95                # for jpg frames; bmp/png are written lossless
  c.workers = 0                      # threads decoding/warping/writing frames; 0 = min(8, CPUs)
  return c


def synthetic_config() -> ml_collections.ConfigDict:
  """The built-in synthetic micro-expression generator (the default dataset)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_subjects = 8
  c.clips_per_class = 4              # per subject and class: identity carries no label information
  c.image_size = 64                  # rendered (and written) size in pixels
  c.min_frames = 20                  # clip length onset..offset, drawn per clip
  c.max_frames = 40
  c.amplitude_px = 1.0               # displacement at the apex, pixels
  c.head_jitter_px = 0.1             # registered-crop level by default; ~0.3+ for raw video
  c.illumination_drift = 0.03        # +- relative brightness drift over a clip
  c.noise_sigma = 2.0 / 255.0        # sensor noise
  c.blink_probability = 0.2
  c.jpeg_quality = 95
  c.neutral_margin = 0.0             # neutral frames around the expression, in expression lengths
                                     # (split at random per clip; > 0 moves the apex in the clip)
  return c


def optim_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.learning_rate = 1e-3
  c.weight_decay = 1e-4
  c.warmup_steps = 20
  c.grad_clip_norm = 1.0
  return c


def train_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_epochs = 20
  c.steps_per_epoch = 10
  c.batch_size = 16                  # clips per fold per step
  c.num_devices = 0                  # local devices to use; 0 = all
  c.folds_per_device = 0             # vmap width; 0 = as many as needed to hold every fold at once
  c.checkpoint_every_epochs = 5
  c.checkpoints_to_keep = 2
  c.eval_every_epochs = 0            # >0 adds the labelled 'oracle best-epoch' figure
  c.distributed = False              # jax.distributed.initialize() for multi-host runs
  return c


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
