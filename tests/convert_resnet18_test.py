"""`python -m cmnet_jax.tools.convert_resnet18`: a torchvision-shaped state dict becomes an .npz
that `load_resnet18_npz` accepts, with each tensor landing where torchvision's layer is."""
import re
import sys

import jax
import numpy as np
import pytest

from cmnet_jax import models
from cmnet_jax.tools import convert_resnet18 as conv
from configs.common import model_config

WIDTHS = (4, 4, 8, 8)  # a narrow ResNet-18: same keys and layouts as torchvision's, small arrays


def fake_state(widths=WIDTHS, seed=0):
  """A torchvision resnet18 state_dict as NumPy arrays, running statistics and fc included."""
  gen = np.random.default_rng(seed)
  state = {k: gen.standard_normal(shape).astype(np.float64)
           for k, shape in conv.expected_shapes(widths).items()}
  for k in [k for k in state if k.endswith(".bias") and "bn" in k or "downsample.1.bias" in k]:
    prefix = k[:-len(".bias")]
    state[f"{prefix}.running_mean"] = np.zeros(state[k].shape)
    state[f"{prefix}.running_var"] = np.ones(state[k].shape)
    state[f"{prefix}.num_batches_tracked"] = np.array(7, np.int64)
  state["fc.weight"], state["fc.bias"] = gen.standard_normal((10, widths[-1])), np.zeros(10)
  return state


def test_imagenet_key_list_is_torchvision_resnet18():
  shapes = conv.expected_shapes()
  assert shapes["layer4.1.conv2.weight"] == (512, 512, 3, 3)
  assert shapes["layer3.0.downsample.1.bias"] == (256,)
  assert sum(int(np.prod(s)) for s in shapes.values()) == 11_689_512 - 513_000  # all but fc


def test_converted_npz_loads_and_maps_tensors_exactly(tmp_path):
  state = fake_state()
  wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}  # DataParallel save
  arrays = conv.convert_state_dict(wrapped, widths=WIDTHS)
  assert set(arrays) == set(state) and arrays["conv1.weight"].dtype == np.float32
  assert arrays["layer1.0.bn1.num_batches_tracked"].dtype == np.int64
  out = conv.write_npz(arrays, tmp_path / "sub" / "r18.npz")
  assert sorted(p.name for p in out.parent.iterdir()) == ["r18.npz"]  # no temporary left

  cfg = model_config("paper")
  cfg.widths, cfg.feature_dim, cfg.embedding_dim, cfg.lstm_hidden, cfg.norm_groups = (
      WIDTHS, 6, 5, 7, 2)
  model = models.build(cfg, num_classes=3)
  clips = np.zeros((1, 2, 16, 16, 3), np.uint8)
  shapes = jax.eval_shape(model.init, {"params": jax.random.key(0),
                                       "dropout": jax.random.key(1)}, clips)
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)["params"]
  loaded = models.load_resnet18_npz(params, out, into="both")
  f32 = lambda k: state[k].astype(np.float32)  # noqa: E731
  for part in ("ice", "ffe"):
    p = loaded[part]
    np.testing.assert_array_equal(p["conv1"]["kernel"], f32("conv1.weight").transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["norm1"]["scale"], f32("bn1.weight"))
    np.testing.assert_array_equal(p["layer4_1"]["conv2"]["kernel"],
                                  f32("layer4.1.conv2.weight").transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["layer2_0"]["downsample_conv"]["kernel"][0, 0],
                                  f32("layer2.0.downsample.0.weight")[:, :, 0, 0].T)
    np.testing.assert_array_equal(p["layer3_0"]["norm2"]["bias"], f32("layer3.0.bn2.bias"))


def test_not_a_resnet18_names_source_and_keys():
  state = fake_state()
  del state["layer2.0.downsample.1.weight"]
  state["layer3.0.conv1.weight"] = np.zeros((8, 4, 5, 5))
  with pytest.raises(conv.ConversionError) as info:
    conv.convert_state_dict(state, widths=WIDTHS, source="mine.pth")
  message = str(info.value)
  assert message.startswith("mine.pth: not a torchvision ResNet-18")
  assert "missing key 'layer2.0.downsample.1.weight'" in message
  assert "'layer3.0.conv1.weight' has shape (8, 4, 5, 5), expected (8, 4, 3, 3)" in message
  with pytest.raises(conv.ConversionError, match="not the model"):
    conv.convert_state_dict(["a model"], source="model.pth")  # type: ignore[arg-type]
  with pytest.raises(conv.ConversionError, match=r"expected \(64, 3, 7, 7\)"):
    conv.convert_state_dict(fake_state())  # ImageNet widths expected by default


def test_command_line_errors(tmp_path, monkeypatch, capsys):
  assert conv.main(["--pth", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o.npz")]) == 1
  assert "nope.pth: no such file" in capsys.readouterr().err
  (tmp_path / "r.pth").write_bytes(b"")
  monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
  assert conv.main(["--pth", str(tmp_path / "r.pth"), "--out", str(tmp_path / "o.npz")]) == 1
  assert "pip install torch" in capsys.readouterr().err
  assert not (tmp_path / "o.npz").exists()


def test_pth_round_trip_with_torch(tmp_path):
  torch = pytest.importorskip("torch")
  state = {k: torch.from_numpy(v) for k, v in fake_state(conv.IMAGENET_WIDTHS).items()}
  torch.save(state, tmp_path / "r18.pth")
  assert conv.main(["--pth", str(tmp_path / "r18.pth"), "--out", str(tmp_path / "r18.npz")]) == 0
  with np.load(tmp_path / "r18.npz") as npz:
    np.testing.assert_array_equal(npz["layer1.0.conv1.weight"],
                                  state["layer1.0.conv1.weight"].numpy().astype(np.float32))


def _bad_npz(path, case):
  """Writes a pretrained file damaged in one way (issue 23, items 10 and 11)."""
  state = {k: v.astype(np.float32) for k, v in fake_state().items()}
  if case == "nan":
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = np.nan
  elif case == "1e30":
    state["bn1.weight"][1] = 1e30
  elif case == "wrong shape":
    state["conv1.weight"] = np.zeros((4, 3, 5, 5), np.float32)
  elif case == "complex":
    state["conv1.weight"] = state["conv1.weight"].astype(np.complex64) * 1j
  elif case == "object array":
    state["bn1.bias"] = np.array([{"not": "weights"}] * 4, dtype=object)
  if case == "empty":
    path.write_bytes(b"")
  elif case == ".npy renamed":
    np.save(path.with_suffix(".npy"), state["conv1.weight"])
    path.with_suffix(".npy").rename(path)
  else:
    np.savez(path, **state)


@pytest.mark.parametrize("case,problem", [
    ("nan", "array 'layer2.0.conv1.weight' has 1 non-finite value (NaN or inf) of 144"),
    ("1e30", "array 'bn1.weight' has values up to 1e+30 in magnitude"),
    ("wrong shape", "array 'conv1.weight' has shape (4, 3, 5, 5), expected (4, 3, 7, 7)"),
    ("empty", "the file is empty (0 bytes)"),
    (".npy renamed", "the file is a single NumPy array (.npy format), not an .npz"),
    ("object array", "array 'bn1.bias' cannot be read (Object arrays cannot be loaded"),
    ("complex", "array 'conv1.weight' is complex (complex64); expected real float weights")],
    ids=["nan", "1e30", "wrong shape", "empty", "npy renamed", "object array", "complex"])
def test_a_bad_pretrained_file_is_named_in_one_line_before_any_work(tmp_path, capsys, case,
                                                                    problem):
  """Issue 23: NaN weights trained for 101 s and then blamed the learning rate; a wrong shape,
  an empty file, a renamed .npy, an object or a complex array failed with a traceback after the
  data were generated and config.json written (or dropped the imaginary part)."""
  from cmnet_jax import cli, config_schema  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  npz = tmp_path / "r18.npz"
  _bad_npz(npz, case)
  config = tiny.get_config()
  with config.unlocked():
    config.model.encoder, config.model.widths = "resnet18", WIDTHS
    config.model.pretrained_npz = str(npz)
  assert cli.run("train", config, tmp_path / "run") == 1
  err = capsys.readouterr().err
  (line,) = err.splitlines()
  assert line.startswith(f"error: model.pretrained_npz = '{npz}': ") and problem in line, line
  assert "convert_resnet18" in line and not (tmp_path / "run").exists()
  # The loader refuses the same file on its own (a library call that skips validation).
  named = {"empty": "empty (0 bytes)", ".npy renamed": "single NumPy array",
           "object array": "Object arrays"}.get(case) or problem.split("'")[1]
  with pytest.raises(ValueError, match=re.escape(named)):
    models.load_resnet18_npz(_params(), npz, into="ice")
  config_schema._pretrained_problem.cache_clear()


def _params():
  cfg = model_config("paper")
  cfg.widths, cfg.feature_dim, cfg.embedding_dim, cfg.lstm_hidden, cfg.norm_groups = (
      WIDTHS, 6, 5, 7, 2)
  shapes = jax.eval_shape(models.build(cfg, num_classes=3).init,
                          {"params": jax.random.key(0), "dropout": jax.random.key(1)},
                          np.zeros((1, 2, 16, 16, 3), np.uint8))
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)["params"]
