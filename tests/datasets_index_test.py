"""LOSO folds, the index report, dispatch errors and the spreadsheet helpers."""
import io
import sys

import numpy as np
import openpyxl
import pytest

from cmnet_jax import datasets
from cmnet_jax.datasets import spreadsheet


def make_index(subjects, num_classes=3):
  clips = tuple(datasets.ClipRecord("x", s, f"c{i}", ("f.jpg",), 0, 0, 0, "e", i % num_classes, "")
                for i, s in enumerate(subjects))
  return datasets.DatasetIndex("x", "/root", clips, tuple(f"k{i}" for i in range(num_classes)))


def test_loso_folds_are_disjoint_and_cover_every_clip_once():
  rng = np.random.default_rng(0)
  subjects = [f"sub{s:02d}" for s in rng.integers(1, 12, size=60)]
  index = make_index(subjects)
  folds = datasets.loso_folds(index)
  assert [f.test_subject for f in folds] == sorted(set(subjects))
  tested = sorted(i for f in folds for i in f.test_ids)
  assert tested == list(range(60))
  for fold in folds:
    assert {subjects[i] for i in fold.test_ids} == {fold.test_subject}
    assert fold.test_subject not in {subjects[i] for i in fold.train_ids}
    assert sorted(fold.train_ids + fold.test_ids) == list(range(60))


def test_report_and_counts():
  index = make_index(["s2", "s1", "s2", "s1", "s1"])
  assert index.class_counts() == dict(k0=2, k1=2, k2=1)
  index = datasets.DatasetIndex("x", "/root", index.clips, index.class_names,
                                (datasets.Skipped("s9/c", "why"),), ("fixed apex",))
  out = io.StringIO()
  assert index.print_report(out) and not index.print_report(out)
  assert out.getvalue().splitlines()[1:] == ["  repaired: fixed apex", "  skipped s9/c: why"]


def test_dispatch_errors(tmp_path):
  with pytest.raises(datasets.DatasetError, match="unknown database 'casme'"):
    datasets.load_index("casme", tmp_path)
  with pytest.raises(datasets.DatasetError, match="root folder .*missing' does not exist"):
    datasets.load_index("samm", tmp_path / "missing")
  with pytest.raises(datasets.DatasetError, match="samm: no annotation file .*SAMM_Micro_FACS"):
    datasets.load_index("samm", tmp_path)


def test_read_table_finds_the_header_and_keeps_cell_types(tmp_path):
  book = openpyxl.Workbook()
  sheet = book.active
  sheet.title = "MICRO_ONLY"
  for row in [["preamble"], [], ["Subject", "Onset Frame", None, "Action Units "],
              ["006", 12, "ignored", "4+7 "], [None, None, None, None], ["007", "13", None, 4]]:
    sheet.append(row)
  book.save(tmp_path / "t.xlsx")
  rows = spreadsheet.read_table(tmp_path / "t.xlsx", sheet="micro_only",
                                required=["subject", "onset  frame"])
  assert [r.number for r in rows] == [4, 6]
  assert rows[0].cells == {"Subject": "006", "Onset Frame": 12, "Action Units": "4+7 "}
  assert spreadsheet.cell(rows[1], "action units") == 4
  assert spreadsheet.as_int(spreadsheet.cell(rows[1], "Onset Frame")) == 13
  with pytest.raises(datasets.DatasetError, match=r"header on row 3 lacks columns \['Apex'\]"):
    spreadsheet.read_table(tmp_path / "t.xlsx", sheet="MICRO_ONLY", required=["Apex"])


def test_each_database_is_declared_once_and_everything_derives_from_it():
  from cmnet_jax.datasets import registry, sources
  from cmnet_jax.datasets import tfds as mer_tfds
  declared = {n: i for n, i in registry.databases().items() if not i.generated}  # licensed
  assert {"casme2", "casme3", "megc2019", "samm", "smic"} <= set(declared)
  assert registry.get("synthetic").generated  # the synthetic set: a database, no licence
  assert sorted(mer_tfds.BUILDERS) == sorted(declared) + ["synthetic"]
  for name, info in declared.items():
    assert info.name == name and info.default_classes in info.schemes
    builder = mer_tfds.BUILDERS[name]
    assert builder.name == f"cmnet_{name}" and builder.DEFAULT_CLASSES == info.default_classes
    assert builder.class_names() == info.class_names()
    assert "http" in info.request and info.request in builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert info.request in sources.describe(name) and name in sources.SOURCES
    for entry in info.layout:
      assert entry in builder.MANUAL_DOWNLOAD_INSTRUCTIONS and entry in sources.describe(name)
  assert "https://helward.mmu.ac.uk/STAFF/M.Yap/dataset.php" in sources.describe("samm")
  with pytest.raises(datasets.DatasetError, match="unknown class scheme '9class'.*'5class'"):
    declared["casme2"].class_names("9class")


TOY_READER = '''
from cmnet_jax.datasets import index, registry

DATABASE = registry.DatabaseInfo(
    name="toy", title="Toy", schemes={"2class": [("a", ("a",)), ("b", ("b",))]},
    default_classes="2class", emotions=("a", "b", "c"), request="nobody (https://example.org)",
    layout=("clips/<clip>/<n>.jpg",))


def read_records(root, *, annotation=None):
  record = lambda s, e: index.ClipRecord("toy", s, "c1", ("f.jpg",), 1, 1, 1, e, -1, "")
  return [record("s1", "a"), record("s2", "c")], [], []
'''


def test_a_new_reader_module_is_all_it_takes(tmp_path, monkeypatch):
  import cmnet_jax.datasets as package
  from cmnet_jax.datasets import registry, sources
  (tmp_path / "toy.py").write_text(TOY_READER)
  monkeypatch.setattr(package, "__path__", list(package.__path__) + [str(tmp_path)])
  registry._readers.cache_clear()  # pylint: disable=protected-access
  try:
    index = datasets.load_index("toy", tmp_path)
    assert [(c.subject, c.label) for c in index.clips] == [("s1", 0)]
    assert index.skipped == (datasets.Skipped("s2/c1", "emotion 'c' is not in the 2class scheme"),)
    assert sources.describe("toy") == ("Toy is licence-restricted: request it from nobody "
                                       "(https://example.org). Unpack it so that it looks like "
                                       "<root>/clips/<clip>/<n>.jpg.")
  finally:
    registry._readers.cache_clear()  # pylint: disable=protected-access
    sys.modules.pop("cmnet_jax.datasets.toy", None)


def test_readers_are_found_by_import_not_by_their_text(tmp_path, monkeypatch):
  """A module is a reader if importing it defines DATABASE, however it is spelt; a module whose
  text only mentions `DATABASE = ...` (here in its docstring) is imported and left out."""
  import cmnet_jax.datasets as package
  from cmnet_jax.datasets import registry
  indented = TOY_READER.replace("\nDATABASE = ", "\nif True:\n  DATABASE = ").replace(
      "\n    name=", "\n      name=")
  (tmp_path / "toy.py").write_text(indented)
  (tmp_path / "notes.py").write_text('"""How to declare one:\nDATABASE = DatabaseInfo(...)\n"""\n')
  monkeypatch.setattr(package, "__path__", list(package.__path__) + [str(tmp_path)])
  registry._readers.cache_clear()  # pylint: disable=protected-access
  try:
    assert "toy" in registry.databases() and "notes" not in registry.databases()
    assert registry.get("toy").title == "Toy"
  finally:
    registry._readers.cache_clear()  # pylint: disable=protected-access
    sys.modules.pop("cmnet_jax.datasets.toy", None)
    sys.modules.pop("cmnet_jax.datasets.notes", None)


def test_a_coding_sheet_without_action_units(tmp_path):
  """`coding.Columns(action_units=None)`: the sheet needs no AU column; records carry ''."""
  from PIL import Image
  from cmnet_jax.datasets import casme2, coding
  clip = tmp_path / "frames" / "sub01" / "EP01"
  clip.mkdir(parents=True)
  for n in range(1, 6):
    Image.new("RGB", (8, 8), (n, n, n)).save(clip / f"img{n}.jpg")
  (tmp_path / "coding.csv").write_text("Subject,Filename,Onset,Apex,Offset,Emotion\n"
                                       "1,EP01,1,3,5,happiness\n")
  columns = coding.Columns("Subject", "Filename", "Onset", "Apex", "Offset", "Emotion")
  read = lambda cols: coding.read_coded_rows(
      "casme2", str(tmp_path / "coding.csv"), str(tmp_path / "frames"), sheet="Sheet1",
      columns=cols, subject_name=casme2.subject_name, subject_folder=casme2.subject_folder)
  (record,), skipped, _ = read(columns)
  assert (record.subject, record.apex, record.emotion, record.action_units) == (
      "sub01", 3, "happiness", "") and not skipped
  with pytest.raises(datasets.DatasetError, match=r"lacks columns \['AU'\]"):
    read(columns._replace(action_units="AU"))
