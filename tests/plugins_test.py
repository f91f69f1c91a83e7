"""`--plugins` (issue 24): a user's module imported before the config is read, so the loss term it
registers has `loss.*` keys the command line sets; recorded in config.json, imported again by eval
in a fresh process; a missing or misnamed module is one line naming it, before anything runs."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cmnet_jax import plugins

ROOT = Path(__file__).resolve().parents[1]
MARK = Path(os.devnull)  # set by the end-to-end test

PLUGIN = textwrap.dedent('''
    """A loss term of one's own: mean |s_t - target| over the clip's frames."""
    import os
    import jax.numpy as jnp
    from cmnet_jax import losses

    with open(os.environ["PLUGIN_MARK"], "a") as f:   # each import leaves a line
      f.write("imported\\n")

    def _level(step, options):
      return jnp.mean(jnp.abs(step.output.intensities - options["level_target"]), axis=1)

    losses.register_term(losses.Term(
        "level", _level, coefficient=0.0, doc="intensities near a fixed level (test plug-in)",
        options={"level_target": losses.Option(0.5, "the level")}))
''')


def _env(*paths):
  env = dict(os.environ, PLUGIN_MARK=str(MARK))
  env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (*paths, ROOT))
  return env


def _command(*args, cwd, paths=()):
  return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(*paths), capture_output=True,
                        text=True, timeout=600)


def test_a_plugin_term_trains_by_config_name_from_any_folder_and_evaluates_in_a_new_process(
    tmp_path, monkeypatch):
  mark = tmp_path / "imports.txt"
  monkeypatch.setattr(sys.modules[__name__], "MARK", mark)
  plug = tmp_path / "plug"
  plug.mkdir()
  (plug / "mylosses.py").write_text(PLUGIN)
  workdir = tmp_path / "run"
  elsewhere = tmp_path / "cwd"   # no configs/ here: the config is found by its name
  elsewhere.mkdir()
  overrides = ["--config.loss.lambda_level=0.25", "--config.loss.level_target=0.3",
               "--config.train.num_epochs=1", f"--workdir={workdir}"]
  r = _command("-m", "cmnet_jax", "--plugins=mylosses", "--config=tiny", *overrides,
               cwd=elsewhere, paths=[plug])
  assert r.returncode == 0, r.stdout + r.stderr
  assert mark.read_text().count("imported") == 1
  recorded = json.loads((workdir / "config.json").read_text())
  assert recorded["plugins"] == ["mylosses"]
  assert (recorded["loss"]["lambda_level"], recorded["loss"]["level_target"]) == (0.25, 0.3)
  results = json.loads((workdir / "results.json").read_text())
  assert results["training_last_epoch"]["level"] >= 0
  assert not (elsewhere / "runs").exists() and sorted(os.listdir(elsewhere)) == []

  # A fresh process, no --plugins: config.json's names are imported before the config is read.
  r = _command(str(ROOT / "run.py"), "--mode=eval", f"--workdir={workdir}", cwd=ROOT,
               paths=[plug])
  assert r.returncode == 0, r.stdout + r.stderr
  assert mark.read_text().count("imported") == 2
  assert json.loads((workdir / "results.json").read_text())["headline"] == results["headline"]
  # The same training command without --plugins (a resume; here a re-print): imported again,
  # so the config built from the file has the term's keys and matches the recorded one.
  r = _command(str(ROOT / "run.py"), "--config=configs/tiny.py", *overrides, cwd=ROOT,
               paths=[plug])
  assert r.returncode == 0, r.stdout + r.stderr
  assert mark.read_text().count("imported") == 3
  # The module gone: one line naming it and where it was recorded.
  r = _command(str(ROOT / "run.py"), "--mode=eval", f"--workdir={workdir}", cwd=ROOT)
  assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
  assert f"{workdir / 'config.json'} (key plugins" in r.stderr
  assert "no module named 'mylosses'" in r.stderr


@pytest.mark.parametrize("args, expected", [
    (["--plugins=no_such_plugin_mod"], "error: --plugins: no module named 'no_such_plugin_mod'"),
    (["--plugins=my-losses"], "error: --plugins: 'my-losses' is not a module name"),
    (["--config.plugins=x"], "error: --config.plugins: the plug-ins are imported before the "
                             "config is read: give them as --plugins=module[,module]"),
])
def test_a_bad_plugin_argument_is_one_line_and_nothing_is_written(tmp_path, args, expected):
  r = _command(str(ROOT / "run.py"), "--config=configs/tiny.py", f"--workdir={tmp_path / 'w'}",
               *args, cwd=ROOT)
  assert r.returncode == 2 and r.stderr.startswith(expected), r.stderr
  assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "w").exists()


def test_a_plugin_that_fails_while_importing_is_named(tmp_path, monkeypatch):
  (tmp_path / "broken_plugin_mod.py").write_text("import numpy\nraise RuntimeError('oops')\n")
  (tmp_path / "needs_more_mod.py").write_text("import not_installed_anywhere_mod\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(plugins.PluginError, match=r"^x: plug-in 'broken_plugin_mod' failed while "
                     r"importing or registering: RuntimeError: oops"):
    plugins.load(["broken_plugin_mod"], source="x")
  with pytest.raises(plugins.PluginError, match="plug-in 'needs_more_mod' imports a module that "
                     "is not installed: No module named 'not_installed_anywhere_mod'"):
    plugins.load(["needs_more_mod"], source="x")
  assert plugins.recorded({"train": {}}) == [] and plugins.recorded({"plugins": ["a.b"]}) == [
      "a.b"]
