"""CMNet: the Intensity Clues Encoder (ICE) and Facial Feature Encoder (FFE), squeeze/extend,
fusion, an LSTM over time and a linear classifier (docs/method.md, "Architecture").

For a clip x_1..x_T (after the input transform of `prepare_inputs`):

    h_t = ICE(x_t)                       s_t = sigmoid(w_s . h_t + b_s)       (squeeze, in (0, 1))
    z_t = W_2 relu(W_1 h_t + b_1) + b_2  (intensity embedding for the ID loss)
    f_t = FFE(x_t)                       e_t = f_t * (w_e s_t + b_e)          (extend, fusion)
    (c_t, h'_t) = LSTM(e_t, (c_{t-1}, h'_{t-1}))                               v = h'_T
    logits = W_c dropout(v) + b_c

s_t lies in (0, 1) like the intensity prototype (epsilon at onset/offset, 1 at the apex). The
extend bias starts at 1, so at initialisation e_t = f_t * (1 + w_e s_t) lets facial features
through whatever the intensities are. Frames are encoded with time folded into the batch.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmnet_jax.models.encoders import ENCODERS

# Raw frames are normalised with ImageNet statistics (what torchvision-pretrained weights expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Onset differences (in [0, 1] scale) are multiplied by this: a one-pixel shift of an edge of
# contrast 0.1-0.3 gives 1-3, sensor noise (sigma 2/255) about 0.1.
DIFFERENCE_SCALE = 10.0
INPUT_MODES = ("raw", "onset_difference", "both")
# Where the fusion's s_t comes from (config model.intensity_source; the training step applies it).
# 'tent' is the position prior: one fixed onset -> apex -> offset tent (the prototype mean with
# the apex at index T // 2) for every clip, whatever it shows; 'constant' is no gate at all (1 for
# every frame: e_t = f_t * extend(1)); experiment arms like 'oracle'.
INTENSITY_SOURCES = ("learned", "oracle", "tent", "constant")
# How the learned s_t enters the fusion (config model.gate_norm): 'none' = as it is; 'minmax' =
# rescaled per clip to [0, 1] ((s - min_t s) / (max_t s - min_t s)), so the clip's weakest frame
# is switched off and its strongest fully on whatever the scale of s (the rank-based intensity
# terms leave the scale free). With the onset-difference input the onset frame (input all zero,
# s ~ 0 there) is left out of the min and max and gets 0: otherwise it is always the minimum and
# the rescaling leaves the other frames as flat as they were. 'softmax' = a temporal softmax
# scaled so the clip's strongest frame gets 1: exp((s_t - max_t s) / tau), tau =
# model.gate_temperature, so a frame 0.1 below the peak gets exp(-1) at tau = 0.1 and the
# non-apex frames are really suppressed whatever the scale of s (onset frame left out and 0 as in
# 'minmax'). The losses and the diagnostics always see s itself.
GATE_NORMS = ("none", "minmax", "softmax")


def normalise_gate(s: jax.Array, gate_norm: str, skip_onset: bool = False,
                   temperature: float = 0.1) -> jax.Array:
  """`[batch, time]` learned intensities -> the fusion's gate (see GATE_NORMS).

  >>> [round(float(v), 4) for v in normalise_gate(jnp.array([[0.2, 0.6, 0.4]]), 'minmax')[0]]
  [0.0, 1.0, 0.5]
  >>> [round(float(v), 4) for v in normalise_gate(jnp.array([[0.0, 0.6, 0.4, 0.5]]), 'minmax',
  ...                                             skip_onset=True)[0]]
  [0.0, 1.0, 0.0, 0.5]
  >>> [round(float(v), 4) for v in normalise_gate(jnp.array([[0.0, 0.6, 0.5, 0.4]]), 'softmax',
  ...                                             skip_onset=True, temperature=0.1)[0]]
  [0.0, 1.0, 0.3679, 0.1353]
  """
  if gate_norm == "none":
    return s
  if gate_norm not in GATE_NORMS:
    raise ValueError(f"model.gate_norm: expected one of {GATE_NORMS}, got {gate_norm!r}")
  scored = s[:, 1:] if skip_onset and s.shape[-1] > 2 else s
  high = jnp.max(scored, axis=-1, keepdims=True)
  if gate_norm == "minmax":
    low = jnp.min(scored, axis=-1, keepdims=True)
    gate = (s - low) / (high - low + 1e-6)
  else:  # 'softmax'
    gate = jnp.exp(jnp.minimum(s - high, 0.0) / temperature)
  return gate.at[:, 0].set(0.0) if scored is not s else gate


class CMNetOutput(NamedTuple):
  """What `CMNet.__call__` returns (all float32).

  Attributes:
    logits: `[batch, num_classes]`.
    intensities: `[batch, time]`, the squeeze output s_t in (0, 1).
    intensity_embeddings: `[batch, time, embedding_dim]`, ICE projection used by the ID loss.
    features: `[batch, time, feature_dim]`, the FFE output f_t before fusion.
  """
  logits: jax.Array
  intensities: jax.Array
  intensity_embeddings: jax.Array
  features: jax.Array


def to_unit_float(clips: jax.Array) -> jax.Array:
  """uint8 in [0, 255] -> float32 / 255; floating input (assumed in [0, 1]) -> float32."""
  clips = jnp.asarray(clips)
  if clips.dtype == jnp.uint8:
    return clips.astype(jnp.float32) / 255.0
  if jnp.issubdtype(clips.dtype, jnp.floating):
    return clips.astype(jnp.float32)
  raise TypeError(f"clips: expected uint8 or float in [0, 1], got dtype {clips.dtype}")


def prepare_inputs(clips: jax.Array, input_mode: str,
                   reference: jax.Array | None = None, *, gain: bool = False) -> jax.Array:
  """Clips `[batch, time, height, width, 3]` -> network input `[batch, time, height, width, c]`.

  - 'raw': (x - mean) / std with ImageNet statistics, c = 3.
  - 'onset_difference': DIFFERENCE_SCALE * (x_t - r_t), both in [0, 1] scale, c = 3; r_t is the
    first frame of the clip unless `reference` (`[batch, time or 1, height, width, 3]`) is given.
  - 'both': the two above concatenated on channels, c = 6.
  With `gain=True` each frame is first rescaled to its reference's mean brightness,
  x_t * mean(r_t) / mean(x_t) (means over height, width and channels), for the difference only:
  a global illumination drift, which grows with time since onset, then no longer shows in the
  difference as a clock (model.difference_gain).

  >>> import jax.numpy as jnp
  >>> x = jnp.stack([jnp.zeros((1, 1, 3)), jnp.full((1, 1, 3), 0.1)])[None]  # [1, 2, 1, 1, 3]
  >>> [round(float(v), 4) for v in prepare_inputs(x, 'onset_difference')[0, :, 0, 0, 0]]
  [0.0, 1.0]
  """
  if clips.ndim != 5 or clips.shape[-1] != 3:
    raise ValueError("clips: expected [batch, time, height, width, 3], got shape "
                     f"{tuple(clips.shape)}")
  x = to_unit_float(clips)
  raw = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  if input_mode == "raw":
    return raw
  ref = x[:, :1] if reference is None else to_unit_float(reference)
  if reference is not None and (ref.ndim != 5 or ref.shape[0] != x.shape[0] or ref.shape[2:]
                                != x.shape[2:] or ref.shape[1] not in (1, x.shape[1])):
    raise ValueError(f"reference: expected [batch, time or 1, height, width, 3] matching clips "
                     f"{tuple(x.shape)}, got {tuple(ref.shape)}")
  if gain:
    level = lambda v: jnp.mean(v, axis=(2, 3, 4), keepdims=True)  # noqa: E731
    x = x * (level(ref) / jnp.maximum(level(x), 1e-3))
  diff = DIFFERENCE_SCALE * (x - ref)
  if input_mode == "onset_difference":
    return diff
  if input_mode == "both":
    return jnp.concatenate([raw, diff], axis=-1)
  raise ValueError(f"model.input_mode: expected one of {INPUT_MODES}, got {input_mode!r}")


class CMNet(nn.Module):
  """The CMNet network. Build it from a config with `cmnet_jax.models.build`.

  Attributes:
    num_classes: classifier outputs.
    encoder: 'small_cnn' | 'resnet18', used for both ICE and FFE (separate weights).
    widths: encoder stage widths.
    feature_dim: size of h_t, f_t and the extend output.
    embedding_dim: size of the intensity embedding z_t.
    lstm_hidden: LSTM state size (v has this size).
    norm_groups: GroupNorm groups in the encoders.
    dropout: dropout rate on v, before the classifier.
    input_mode: 'raw' | 'onset_difference' | 'both' (see `prepare_inputs`).
    dtype: compute dtype of convolutions, Dense layers and the LSTM; params stay float32.
    conv_impl: how convolutions run: 'auto' (im2col on CPU, XLA's convolution elsewhere),
      'xla', 'im2col' (see `encoders.im2col_conv`) or 'onednn' (CPU, opt-in: oneDNN's kernels,
      see `models.onednn`). The parameters are the same either way.
    pool_grid: the encoders' head pools to this grid before its projection (1 = global average
      pool; >1 keeps where on the face features fire).
    gate_norm: how the learned s_t enters the fusion (GATE_NORMS); gate_temperature: its
      'softmax' temperature.
    difference_gain: `prepare_inputs(gain=True)`: brightness-matched onset differences.
  """
  num_classes: int
  encoder: str
  widths: Sequence[int]
  feature_dim: int
  embedding_dim: int
  lstm_hidden: int
  norm_groups: int
  dropout: float
  input_mode: str
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  pool_grid: int = 1
  gate_norm: str = "none"
  gate_temperature: float = 0.1
  difference_gain: bool = False

  def setup(self):
    enc = ENCODERS[self.encoder]
    self.ice = enc(tuple(self.widths), self.feature_dim, self.norm_groups, self.dtype,
                   self.conv_impl, self.pool_grid)
    self.ffe = enc(tuple(self.widths), self.feature_dim, self.norm_groups, self.dtype,
                   self.conv_impl, self.pool_grid)
    self.squeeze = nn.Dense(1, dtype=self.dtype)
    self.extend = nn.Dense(self.feature_dim, dtype=self.dtype, bias_init=nn.initializers.ones)
    self.projection_hidden = nn.Dense(self.feature_dim, dtype=self.dtype)
    self.projection = nn.Dense(self.embedding_dim, dtype=self.dtype)
    self.lstm = nn.RNN(nn.OptimizedLSTMCell(self.lstm_hidden, dtype=self.dtype), return_carry=True)
    self.drop = nn.Dropout(self.dropout)
    self.classifier = nn.Dense(self.num_classes, dtype=self.dtype)

  def _prepare(self, clips: jax.Array, reference: jax.Array | None) -> jax.Array:
    return prepare_inputs(clips, self.input_mode, reference,
                          gain=self.difference_gain).astype(self.dtype)

  def _encode(self, encoder: nn.Module, x: jax.Array) -> jax.Array:
    """`[batch, time, h, w, c]` -> `[batch, time, d]`, time folded into the batch (one call)."""
    b, t = x.shape[:2]
    y = encoder(x.reshape((b * t,) + x.shape[2:]))
    return y.reshape(b, t, y.shape[-1])

  def _intensity(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = self._encode(self.ice, x)
    s = jax.nn.sigmoid(self.squeeze(h)[..., 0].astype(jnp.float32))
    z = self.projection(nn.relu(self.projection_hidden(h)))
    return s, z.astype(jnp.float32)

  def _intensity_with_positives(self, x: jax.Array, x_pos: jax.Array
                                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`_intensity` of the clips and the embeddings of their positive views, in one ICE call.

    The views are stacked after the clips on the batch axis. Every frame is encoded on its own
    (convolutions, per-frame GroupNorm, per-frame heads), so this is the same function as two
    calls, with one set of larger operations instead of two (and one backward pass).
    """
    b = x.shape[0]
    h = self._encode(self.ice, jnp.concatenate([x, x_pos], axis=0))
    z = self.projection(nn.relu(self.projection_hidden(h))).astype(jnp.float32)
    s = jax.nn.sigmoid(self.squeeze(h[:b])[..., 0].astype(jnp.float32))
    return s, z[:b], z[b:]

  def intensity_branch(self, clips: jax.Array, train: bool = False,
                       reference: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """ICE only (for the ID loss's positive views): clips -> (s `[batch, time]`,
    z `[batch, time, embedding_dim]`), float32, same parameters as `__call__`.

    `train` is accepted for symmetry (the branch has no dropout). `reference` replaces the first
    frame in the onset difference; give it photometrically matched views of the onset frame
    (`augment.positive_views` with the same rng) so the difference is not all augmentation.
    """
    del train
    return self._intensity(self._prepare(clips, reference))

  def __call__(self, clips: jax.Array, train: bool = False,
               reference: jax.Array | None = None,
               intensities: jax.Array | None = None,
               gate: jax.Array | None = None) -> CMNetOutput:
    """Clips `[batch, time, height, width, 3]` (uint8, or float in [0, 1]) -> `CMNetOutput`.

    With `train=True` and dropout > 0, pass `rngs={'dropout': key}` to `apply`.
    `intensities` `[batch, time]`, if given, replaces the squeeze output s_t in the fusion (and
    in the output): the oracle gate (the true intensity) and the gate ablation (each clip's mean
    s) use it. The ICE still runs, so the intensity embeddings are those of the clips.
    `gate` `[batch, time]`, if given, replaces the fusion's gate only: the output keeps the
    learned s (teacher forcing, `model.train_gate='prototype'`).
    """
    x = self._prepare(clips, reference)
    s, z = self._intensity(x)
    return self._classify(x, s, z, train, intensities, gate)

  def with_positives(self, clips: jax.Array, positives: jax.Array, train: bool = False,
                     reference: jax.Array | None = None,
                     intensities: jax.Array | None = None,
                     positives_reference: jax.Array | None = None,
                     gate: jax.Array | None = None
                     ) -> tuple[CMNetOutput, jax.Array]:
    """`__call__` on the clips and the ICE embeddings of their positive views, with ONE ICE call.

    `positives` are the ID loss's photometric views, shaped like `clips`, and
    `positives_reference` their matched onset frames (as `reference` in `intensity_branch`).
    Returns `(__call__(clips, train, reference, intensities),
    intensity_branch(positives, reference=positives_reference)[1])`, equal to those two calls up
    to float rounding: the views are stacked after the clips on the batch axis and every frame is
    encoded on its own. One set of larger operations (and one backward pass) instead of two.
    """
    if positives.shape != clips.shape:
      raise ValueError(f"positives: expected the clips' shape {tuple(clips.shape)}, got "
                       f"{tuple(positives.shape)}")
    x = self._prepare(clips, reference)
    x_pos = self._prepare(positives, positives_reference)
    s, z, z_pos = self._intensity_with_positives(x, x_pos)
    return self._classify(x, s, z, train, intensities, gate), z_pos

  def _classify(self, x: jax.Array, s: jax.Array, z: jax.Array, train: bool,
                intensities: jax.Array | None, gate: jax.Array | None = None) -> CMNetOutput:
    """FFE, fusion with s_t (or `intensities`, or `gate`), LSTM and classifier."""
    def given(name, value):
      if value.shape != s.shape:
        raise ValueError(f"{name}: expected [batch, time] = {s.shape}, got {value.shape}")
      return jnp.asarray(value, jnp.float32)

    gate = None if gate is None else given("gate", gate)
    if intensities is not None:  # replaces s itself, in the fusion and the output
      s = gate = given("intensities", intensities)
    elif gate is None:
      gate = normalise_gate(s, self.gate_norm, skip_onset=self.input_mode == "onset_difference",
                            temperature=self.gate_temperature)
    f = self._encode(self.ffe, x)
    e = f * self.extend(gate[..., None])
    (_, v), _ = self.lstm(e)
    v = self.drop(v, deterministic=not train)
    logits = self.classifier(v)
    return CMNetOutput(logits=logits.astype(jnp.float32), intensities=s,
                       intensity_embeddings=z, features=f.astype(jnp.float32))
