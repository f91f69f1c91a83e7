"""Config blocks: one reader (`read_block`), and `validate` naming every bad key before any work."""
from pathlib import Path

import jax
import pytest

from cmnet_jax import augment
from cmnet_jax import config_blocks as cb
from cmnet_jax import losses
from cmnet_jax import config_schema
from cmnet_jax import models

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py")
                 if p.stem not in ("__init__", "common"))


def _config(name="tiny", arg=""):
  return __import__(f"configs.{name}", fromlist=["get_config"]).get_config(arg)


def _with(**changes):
  """The tiny config with dotted keys changed, e.g. _with(**{'train.batch_size': 0})."""
  config = _config()
  for dotted, value in changes.items():
    block, key = dotted.split(".")
    with config[block].ignore_type():
      config[block][key] = value
  return config


def _problems(config, **kw):
  with pytest.raises(cb.ConfigError) as info:
    config_schema.validate(config, **kw)
  return info.value.problems


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "quick"])
def test_every_shipped_config_is_valid(name, arg):
  values = config_schema.validate(_config(name, arg), device_count=8)
  assert set(values) >= {"model", "data", "synthetic", "augment", "loss", "optim", "train"}


# The bad values issue 15 found (each gave a traceback, or failed only after training), and what
# the message must say: the key, the value, the expectation.
CASES = [
    ("train.batch_size", -4, "expected an int >= 1"),
    ("train.batch_size", 0, "expected an int >= 1"),
    ("train.num_epochs", 0, "expected an int >= 1"),
    ("train.steps_per_epoch", 0, "expected an int >= 1"),
    ("data.image_size", 0, "expected an int >= 8"),
    ("data.train_jitter_copies", 0, "expected an int >= 1"),
    ("train.checkpoints_to_keep", 0, "expected an int >= 1"),
    ("train.checkpoint_every_epochs", 0, "expected an int >= 1"),
    ("data.num_frames", 1, "expected an int >= 2"),
    ("model.encoder", "resnet", "expected a string in ('resnet18', 'small_cnn')"),
    ("model.input_mode", "onset_diff", "'raw', 'onset_difference', 'both'"),
    ("loss.id_temperature", 0.0, "expected a number > 0"),
    ("optim.learning_rate", -1e-3, "expected a number > 0"),
    ("augment.blur_kernel", 4, "odd and >= 1"),
    ("synthetic.jpeg_quality", 0, "in [1, 100]"),
    ("loss.w_segments", "halves", "('whole', 'split')"),
]


@pytest.mark.parametrize("key,value,expected", CASES, ids=[f"{k}={v}" for k, v, _ in CASES])
def test_bad_value_names_key_value_and_expectation(key, value, expected):
  (problem,) = _problems(_with(**{key: value}), device_count=8)
  assert problem.startswith(f"{key} = {value!r}: ") and expected in problem


def test_num_devices_beyond_local_devices():
  (problem,) = _problems(_with(**{"train.num_devices": 99}))
  assert problem.startswith("train.num_devices = 99")
  assert f"at most the {jax.local_device_count()} local devices" in problem
  config_schema.validate(_with(**{"train.num_devices": jax.local_device_count()}))
  config_schema.validate(_with(**{"train.num_devices": 99, "train.distributed": True}))  # JAX not started


def test_every_problem_is_reported_at_once():
  problems = _problems(_with(**{"train.batch_size": 0, "data.num_frames": 1,
                                "model.encoder": "vgg", "loss.id_temperature": 0.0}),
                       device_count=8)
  assert [p.split(" ")[0] for p in problems] == ["model.encoder", "data.num_frames",
                                                 "loss.id_temperature", "train.batch_size"]


def test_wrong_type_and_cross_block_rules():
  problems = _problems(_with(**{"train.batch_size": "8", "model.widths": (8, 6)}), device_count=8)
  assert problems[0] == ("model.widths = (8, 6), model.norm_groups = 4: expected every width "
                         "divisible by model.norm_groups")
  assert problems[1].startswith("train.batch_size = '8': expected an int")
  # tiny: 3 subjects x 1 clip x 5 classes -> a fold trains on 10 clips.
  (problem,) = _problems(_with(**{"train.batch_size": 11}), device_count=8)
  assert "train.batch_size = 11" in problem and "synthetic.num_subjects = 3" in problem
  config_schema.validate(_with(**{"train.batch_size": 10}), device_count=8)
  (problem,) = _problems(_with(**{"synthetic.num_subjects": 1, "train.batch_size": 1}),
                         device_count=8)
  assert "at least 2 synthetic subjects" in problem


def test_pretrained_file_and_class_scheme_are_checked(tmp_path):
  config = _config("casme2")
  config.model.pretrained_npz = str(tmp_path / "missing.npz")
  config.data.classes = "4class"
  problems = _problems(config, device_count=8)
  assert any("model.pretrained_npz" in p and "convert_resnet18" in p for p in problems)
  assert any("data.classes = '4class'" in p and "'3class'" in p for p in problems)
  (tmp_path / "missing.npz").write_bytes(b"")  # exists, but its contents are checked too
  config.data.classes = "3class"
  (problem,) = _problems(config, device_count=8)
  assert "model.pretrained_npz" in problem and "the file is empty (0 bytes)" in problem
  config.model.pretrained_npz = ""
  config_schema.validate(config, device_count=8)


def test_missing_key_and_block_are_key_errors():
  config = _config().to_dict()
  del config["train"]["seed"], config["optim"]
  with pytest.raises(KeyError) as info:
    config_schema.validate(config, device_count=8)
  assert isinstance(info.value, cb.ConfigError)
  assert str(info.value).splitlines() == [
      "the config has no 'optim' block (see configs/common.py)",
      "train.seed is missing: expected an int >= 0"]


def test_read_block_returns_typed_values():
  values = cb.read_block(dict(_config().model, widths=[8, 8], dropout=0), models.SPEC, "model")
  assert values["widths"] == (8, 8) and isinstance(values["dropout"], float)
  with pytest.raises(cb.ConfigError, match=r"augment.flip = 1: expected a bool"):
    cb.read_block(dict(_config().augment, flip=1), augment.SPEC, "augment")
  with pytest.raises(cb.ConfigError, match=r"augment.blur_sigma = \(2.0, 1.0\): expected a pair"):
    augment.positive_views(jax.random.key(0), jax.numpy.zeros((1, 2, 8, 8, 3)),
                           dict(_config().augment, blur_sigma=(2.0, 1.0)))


def _peak(step, options):
  """A user's term, declared only here: its option carries its own check."""
  s = step.output.intensities
  return jax.numpy.maximum(0.0, options["custom_margin"] - s.max(-1) + s.mean(-1))


def test_loss_block_follows_the_loss_term_registry():
  """A registered term's coefficient and options are checked as declared; keys no spec names
  pass; the config built after registering has the term's keys with their defaults."""
  from configs import common
  config = _config().to_dict()
  config["loss"].update(lambda_custom=-1.0, custom_scale="big", custom_margin=0.0,
                        custom_free=0.0)
  config_schema.validate(config, device_count=8)  # not registered: not checked
  losses.register_term(losses.Term("custom", _peak, options={
      "custom_scale": losses.Option(1.0, "a scale"),
      "custom_margin": losses.Option(0.1, "margin", check=cb.positive)}))
  try:
    problems = _problems(config, device_count=8)
    extra = {"loss": config_schema.loss_spec({"custom_free": cb.Field(cb.FLOAT, cb.positive)})}
    more = _problems(config, specs=extra, device_count=8)
    built = common.loss_config()
  finally:
    losses.unregister_term("custom")
  assert problems == ("loss.lambda_custom = -1.0: expected a number >= 0 (coefficient of a loss "
                      "term)", "loss.custom_scale = 'big': expected a number (a scale)",
                      "loss.custom_margin = 0.0: expected a number > 0 (margin)")
  assert more[3:] == ("loss.custom_free = 0.0: expected a number > 0",)
  assert (built.lambda_custom, built.custom_scale, built.custom_margin) == (0.0, 1.0, 0.1)
  assert "custom_margin" not in common.loss_config()


def test_option_without_a_config_kind_is_refused():
  with pytest.raises(TypeError, match="Option\\(kind=...\\)"):
    losses.Option([1, 2], "a list").field()
  assert losses.Option((1, 2), "a pair", kind=cb.INTS).field().default == (1, 2)


def test_align_block_and_aligned_root_are_validated():
  from configs import samm
  c = samm.get_config()
  with c.unlocked():
    c.align.size = 2
    c.align.fallback = "blur"
  with pytest.raises(cb.ConfigError) as e:
    config_schema.validate(c, device_count=8)
  assert "align.size = 2" in str(e.value) and "align.fallback = 'blur'" in str(e.value)
  assert "aligned_root" in config_schema.block_specs()["data"].fields
