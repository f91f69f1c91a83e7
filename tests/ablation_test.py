"""experiments/ablation.py: the grid, each arm's config, resuming, the deadline and the summary."""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from configs import synthetic
from experiments import ablation


def test_grid_covers_every_run_once_most_informative_first():
  runs = ablation.grid()
  assert len(runs) == len(set(runs)) == len(ablation.ARMS) * len(ablation.AMPLITUDES) * 3
  main = len(ablation.ARMS) * 3
  # Every arm at the default amplitude first, seed-major (whole seeds of every arm).
  assert {r.amplitude for r in runs[:main]} == {2.0}
  assert [r.seed for r in runs[:main]] == sorted(r.seed for r in runs[:main])
  assert [r.arm for r in runs[:len(ablation.ARMS)]] == list(ablation.ARMS)
  # Then the core arms at the other amplitudes, before the remaining arms there.
  rest = ablation.AMPLITUDES[1:]
  core = runs[main:main + len(ablation.CORE_ARMS) * len(rest) * 3]
  assert {r.arm for r in core} == set(ablation.CORE_ARMS)
  assert {r.amplitude for r in core} == set(rest)
  assert not set(ablation.CORE_ARMS) & {r.arm for r in runs[main + len(core):]}


@pytest.mark.parametrize("arm", list(ablation.ARMS))
def test_run_config_sets_the_arm_amplitude_seed_and_shared_data(arm, tmp_path):
  base = synthetic.get_config()
  for key in ablation.ARMS[arm]:  # a misspelt key would silently add a new one while unlocked
    block, name = key.split(".")
    assert name in base[block], f"{key} is not a config key"
  c = ablation.run_config(ablation.Run(0.5, arm, 2), tmp_path,
                          overrides={"data.frame_sampling": "uniform"})
  assert c.data.frame_sampling == "uniform"
  assert c.synthetic.amplitude_px == 0.5 and c.train.seed == 2
  assert c.data.root == str(tmp_path / "data" / "amp0.5")
  assert c.train.checkpoint_every_epochs == c.train.num_epochs
  for block in ("loss", "model"):
    expected = base[block].to_dict()
    expected.update({k.split(".")[1]: v for k, v in ablation.ARMS[arm].items()
                     if k.startswith(block + ".")})
    assert c[block].to_dict() == expected
  # Everything else is the synthetic default.
  for block in ("augment", "optim"):
    assert c[block].to_dict() == base[block].to_dict()


def _fake_result(rng, seed):
  return {"headline": {"accuracy": float(rng.uniform()), "uf1": float(rng.uniform()),
                       "uar": float(rng.uniform())},
          "intensity": {k: float(rng.uniform()) for k in ablation.DIAGNOSTICS}}


def test_run_grid_resumes_and_respects_the_deadline(tmp_path):
  runs = ablation.grid(("ce", "default"), (2.0,), (0, 1))
  done = runs[0].path(tmp_path)
  done.mkdir(parents=True)
  (done / "results.json").write_text(json.dumps(_fake_result(np.random.default_rng(0), 0)))
  calls = []

  def fake_train(config, workdir):
    calls.append((config.loss.lambda_id, config.train.seed, Path(workdir)))
    result = _fake_result(np.random.default_rng(len(calls)), config.train.seed)
    (Path(workdir) / "results.json").parent.mkdir(parents=True, exist_ok=True)
    (Path(workdir) / "results.json").write_text(json.dumps(result))
    return result

  ablation.run_grid(tmp_path, runs, float("inf"), train_fn=fake_train, compile_cache=False)
  assert [c[2] for c in calls] == [r.path(tmp_path) for r in runs[1:]]  # the finished one skipped
  assert [(c[0], c[1]) for c in calls] == [(0.1, 0), (0.0, 1), (0.1, 1)]
  log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
  assert [(r["arm"], r["seed"]) for r in log] == [("default", 0), ("ce", 1), ("default", 1)]
  # Per-run rows: every finished run, with the device and seconds of those this call trained.
  rows = {(r["arm"], r["seed"]): r for r in ablation.run_rows(tmp_path)}
  assert set(rows) == {("ce", 0), ("default", 0), ("ce", 1), ("default", 1)}
  assert rows["ce", 0]["device"] is None and rows["default", 1]["seconds"] >= 0
  written = json.loads((runs[3].path(tmp_path) / "results.json").read_text())
  assert rows["default", 1]["accuracy"] == written["headline"]["accuracy"]
  # All done: nothing runs again.
  ablation.run_grid(tmp_path, runs, float("inf"), train_fn=fake_train, compile_cache=False)
  assert len(calls) == 3
  # A deadline: no run starts once the time left is shorter than the median run so far.
  more = ablation.grid(("ce",), (1.0,), (0, 1, 2))
  ablation.run_grid(tmp_path, more, 0.0, train_fn=fake_train, compile_cache=False)
  assert len(calls) == 3

  def slow_train(config, workdir):
    time.sleep(0.3)
    return fake_train(config, workdir)

  ablation.run_grid(tmp_path, more, 0.2, train_fn=slow_train, compile_cache=False)
  assert len(calls) == 4 and calls[-1][2] == more[0].path(tmp_path)


def test_summarize_is_mean_and_sample_sd_over_seeds(tmp_path):
  rng = np.random.default_rng(3)
  written = {}
  for arm, seeds in (("default", (0, 1, 2)), ("ce", (0, 1, 2)), ("oracle", (4,))):
    for seed in seeds:
      path = ablation.Run(1.0, arm, seed).path(tmp_path)
      path.mkdir(parents=True)
      written[arm, seed] = _fake_result(rng, seed)
      (path / "results.json").write_text(json.dumps(written[arm, seed]))
  rows = ablation.summarize(tmp_path).splitlines()
  assert len(rows) == 2 + 3
  assert [r.split(" | ")[1] for r in rows[2:]] == ["ce", "default", "oracle"]  # ARMS order
  for row in rows[2:]:
    cells = [c.strip() for c in row.strip("|").split("|")]
    arm, seeds = cells[1], [int(s) for s in cells[2].split(",")]
    values = [written[arm, s] for s in seeds]
    columns = [[v["headline"][k] for v in values] for k in ("accuracy", "uf1", "uar")]
    columns += [[v["intensity"][k] for v in values] for k in ablation.DIAGNOSTICS]
    for cell, column in zip(cells[3:], columns):
      if len(column) == 1:
        assert cell == f"{column[0]:.3f}"
      else:
        mean, sd = (float(x) for x in cell.split(" ± "))
        assert mean == pytest.approx(np.mean(column), abs=5e-4)
        assert sd == pytest.approx(np.std(column, ddof=1), abs=5e-4)


def test_summarize_pools_earlier_rows_and_counts_a_run_once(tmp_path):
  rng = np.random.default_rng(5)
  for seed in (0, 1):
    path = ablation.Run(2.0, "tent", seed).path(tmp_path)
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(_fake_result(rng, seed)))
  here = {r["seed"]: r for r in ablation.run_rows(tmp_path)}
  earlier = [dict(here[1], accuracy=0.99),            # also under root: the root's copy counts
             dict(here[0], seed=7, accuracy=0.1)]     # only in the record: pooled
  record = tmp_path / "earlier.jsonl"
  record.write_text("".join(json.dumps(r) + "\n" for r in earlier))
  out = tmp_path / "pooled.jsonl"
  assert ablation.main(["--root", str(tmp_path), "--summarize", "--earlier", str(record),
                        "--runs-out", str(out)]) == 0
  pooled = {r["seed"]: r["accuracy"] for r in map(json.loads, out.read_text().splitlines())}
  assert pooled == {0: here[0]["accuracy"], 1: here[1]["accuracy"], 7: 0.1}
  row = ablation.summarize(tmp_path, ablation.read_rows([record])).splitlines()[2]
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[1:3] == ["tent", "0,1,7"]
  assert float(cells[3].split(" ± ")[0]) == pytest.approx(np.mean(list(pooled.values())), abs=5e-4)
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"arm": "tent"}\nnot json\n')
  with pytest.raises(ValueError, match="bad.jsonl, line 2"):
    ablation.read_rows([bad])
