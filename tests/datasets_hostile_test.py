"""Bad and hostile database trees and annotation files (issue 23): each is a clear error naming
the file, row or frame and what to do, before any work, or a repair the report states.

Trees are written by `cmnet_jax.testing.fake_trees` in each database's real layout."""
import os

import pytest

from cmnet_jax import datasets
from cmnet_jax.datasets import frames
from cmnet_jax.datasets import writers
from cmnet_jax.testing import fake_trees

ROW = dict(subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
           emotion="happiness", objective_class=1)
ROW2 = dict(subject=2, filename="EP03_02", onset=5, apex=7, offset=9, action_units=4,
            emotion="disgust", objective_class=3)
CODING = "CASME2-coding-20190701.xlsx"


def _casme2(tmp_path, rows=(ROW, ROW2), **kwargs):
  return fake_trees.write_casme2_tree(tmp_path / "CASME2", list(rows), **kwargs)


def _coding_table(rows, header=writers.CASME2_HEADER):
  """The CASME II sheet's rows as written (header first), cells as `write_casme2_coding`."""
  body = [[writers.padded_text(r["subject"], 2), r["filename"], None, r["onset"], r["apex"],
           r["offset"], None, writers.excel_au(r["action_units"]), r["emotion"]] for r in rows]
  return [list(header)] + body


# -- item 2: a column headed twice ----------------------------------------------------------------

def test_a_known_column_headed_twice_is_refused_naming_both_columns(tmp_path):
  root = _casme2(tmp_path)
  table = _coding_table([ROW, ROW2])
  table[0].append("ApexFrame")            # column J: a second apex column
  for values in table[1:]:
    values.append(59)
  writers.write_sheet(os.path.join(root, CODING), "Sheet1", table)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_index("casme2", root)
  message = str(e.value)
  assert CODING in message and "'ApexFrame' 2 times" in message
  assert "E (column 5) and J (column 10)" in message


def test_a_column_headed_twice_in_a_csv_is_refused_and_unread_ones_may_repeat(tmp_path):
  root = _casme2(tmp_path)
  os.remove(os.path.join(root, CODING))
  header = list(writers.CASME2_HEADER) + ["Notes", "Notes"]
  lines = [",".join("" if v is None else str(v) for v in header)]
  lines += [",".join(str(v) for v in ["01", "EP02_01f", "", 46, 50, 54, "", 12, "happiness",
                                      "a", "b"])]
  csv_path = os.path.join(root, "CASME2-coding-x.csv")
  with open(csv_path, "w") as f:
    f.write("\n".join(lines) + "\n")
  assert len(datasets.load_index("casme2", root).clips) == 1   # 'Notes' is not read
  with open(csv_path, "w") as f:
    f.write("\n".join([lines[0].replace("Estimated Emotion", "onsetframe")] + lines[1:]) + "\n")
  with pytest.raises(datasets.DatasetError, match=r"CASME2-coding-x.csv.*'OnsetFrame' 2 times, "
                     r"in D \(column 4\) and I \(column 9\)"):
    datasets.load_index("casme2", root)


# -- item 5: annotation values that lead outside the database folder ------------------------------

def _outside(tmp_path):
  """A clip folder outside the database, with frames a reader must never read."""
  folder = tmp_path / "outside"
  fake_trees.write_frames(folder, range(46, 55), "reg_img{}.jpg")
  return folder


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_casme2_filename_leading_outside_the_root_is_refused_naming_the_row(tmp_path, how):
  outside = _outside(tmp_path)
  evil = "../../../outside" if how == "relative" else str(outside)
  root = _casme2(tmp_path, [ROW, ROW2, dict(ROW, filename=evil, write=False)])
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_index("casme2", root)
  assert f"{CODING} row 4" in str(e.value) and f"Filename {evil!r} leads outside" in str(e.value)


def test_a_samm_filename_leading_outside_the_root_is_refused_naming_the_row(tmp_path):
  outside = tmp_path / "outside"
  fake_trees.write_frames(outside, range(5562, 5571), "006_{:05d}.jpg", grey=True)
  good = dict(subject="006", filename="006_1_3", onset=870, apex=872, offset=874,
              action_units="1", emotion="Surprise")
  evil = dict(subject="006", filename="../../../outside", onset=5562, apex=5566, offset=5570,
              action_units="4", emotion="Anger", write=False)
  root = fake_trees.write_samm_tree(tmp_path / "SAMM", [good])
  table = [[f"preamble {i}"] for i in range(12)] + [[], list(fake_trees.SAMM_HEADER)]
  for row in (good, evil):
    table.append([row["subject"], row["filename"], 1, row["onset"], row["apex"], row["offset"],
                  None, "Micro - 1/2", row["action_units"], row["emotion"], 1, None])
  writers.write_sheet(os.path.join(root, "SAMM_Micro_FACS_Codes_v2.xlsx"), "MICRO_ONLY", table)
  with pytest.raises(datasets.DatasetError, match=r"006/\.\./\.\./\.\./outside "
                     r"\(SAMM_Micro_FACS_Codes_v2.xlsx row 16\).*leads outside"):
    datasets.load_index("samm", root)


@pytest.mark.parametrize("clip_release", [True, False], ids=["clip_release", "videos"])
def test_a_casme3_subject_or_filename_leading_outside_the_root_is_refused(tmp_path,
                                                                          clip_release):
  good = dict(subject="spNO.1", filename="a", onset=355, apex=358, offset=361,
              action_units="4", emotion="happy")
  evil = dict(good, filename="../../../../outside", write=False)
  if clip_release:
    evil = dict(good, subject="../../../outside", write=False)
  fake_trees.write_frames(tmp_path / "outside_a_355", range(355, 362), "{}.jpg")
  fake_trees.write_frames(tmp_path / "outside" / "color", range(355, 362), "{}.jpg")
  root = fake_trees.write_casme3_tree(tmp_path / "CASME3", [good, evil],
                                      clip_release=clip_release)
  with pytest.raises(datasets.DatasetError, match=r"row 3\).*leads outside"):
    datasets.load_index("casme3", root)


# -- item 13: an offset typo ----------------------------------------------------------------------

@pytest.mark.parametrize("offset", [540, 1_000_000_000])
def test_an_implausible_frame_range_is_refused_naming_the_row_before_any_work(tmp_path, offset):
  root = _casme2(tmp_path, [ROW2, ROW])
  table = _coding_table([ROW2, dict(ROW, offset=offset)])
  writers.write_sheet(os.path.join(root, CODING), "Sheet1", table)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_index("casme2", root)
  message = str(e.value)
  assert f"sub01/EP02_01f ({CODING} row 3): frame range 46..{offset}" in message
  assert "implausible" in message and "9 frame files, numbered 46..54" in message


def test_a_few_missing_frames_are_still_a_note(tmp_path):
  root = _casme2(tmp_path, [ROW2, dict(ROW, frames=[46, 47, 54])])
  index = datasets.load_index("casme2", root)
  assert any("6 of 9 frames missing" in note and "[48, 49, 50, 51, 52]" in note
             for note in index.notes)


# -- item 15: duplicate rows with conflicting labels ----------------------------------------------

def test_casme2_duplicate_rows_with_other_labels_say_so_and_which_row_was_kept(tmp_path):
  root = _casme2(tmp_path, [ROW, ROW2, dict(ROW, emotion="disgust", write=False),
                            dict(ROW2, write=False)])
  index = datasets.load_index("casme2", root)
  assert [c.emotion for c in index.clips] == ["happiness", "disgust"]
  reasons = {s.item: s.reason for s in index.skipped}
  assert reasons[f"sub01/EP02_01f ({CODING} row 4)"] == (
      "duplicate (Subject, Filename) key of row 2, which is kept; the labels differ: Estimated "
      "Emotion 'disgust' in row 4, 'happiness' in row 2 (check which is right)")
  assert reasons[f"sub02/EP03_02 ({CODING} row 5)"].endswith("of row 3, which is kept; same values")
  assert "the labels differ" in index.report()


def test_megc2019_rows_listed_twice_with_other_classes_say_so_and_which_line_was_kept(tmp_path):
  fake_trees.write_casme2_tree(tmp_path / "CASME2", [ROW, ROW2])
  fake_trees.write_megc2019_csv(tmp_path / "combined_3class_gt.csv", [
      ("casme2", "sub01", "EP02_01f", 1), ("casme2", "sub02", "EP03_02", 0),
      ("casme2", "sub01", "EP02_01f", 0), ("casme2", "sub02", "EP03_02", 0)])
  index = datasets.load_index("megc2019", tmp_path)
  assert [(c.clip_id, c.label) for c in index.clips] == [("EP02_01f", 1), ("EP03_02", 0)]
  reasons = [s.reason for s in index.skipped]
  assert reasons == [
      "listed twice: also on line 1, which is kept; the classes differ: 0 (negative) on line 3, "
      "1 (positive) on line 1 (check which is right)",
      "listed twice: also on line 2, which is kept; same class"]


# -- item 12: a decompression bomb ----------------------------------------------------------------

def _png_header_only(path, width, height):
  """A small PNG whose header claims `width` x `height` (the pixels are never there)."""
  import struct
  import zlib

  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                                0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
  return str(path)


@pytest.mark.parametrize("side", [20000, 9000])   # above PIL's error limit; above ours only
def test_a_decompression_bomb_frame_is_refused_naming_it_in_training(tmp_path, side):
  root = _casme2(tmp_path, [ROW, ROW2])
  folder = os.path.join(root, "Cropped", "sub01", "EP02_01f")
  os.remove(os.path.join(folder, "reg_img50.jpg"))
  bomb = _png_header_only(os.path.join(folder, "reg_img50.png"), side, side)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_index("casme2", root)
  assert f"frame {bomb!r}" in str(e.value) and f"{frames.MAX_FRAME_PIXELS}" in str(e.value)
  with pytest.raises(datasets.DatasetError, match="decompression bomb"):
    frames.decode_frame(_png_header_only(tmp_path / "b.png", 9000, 9000), 16, "clip")


def test_a_decompression_bomb_frame_is_refused_naming_it_in_predict(tmp_path, capsys):
  from cmnet_jax import predict  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "clip"
  fake_trees.write_frames(folder, range(1, 6), "img{}.jpg")
  bomb = _png_header_only(folder / "img6.png", 20000, 20000)
  with pytest.raises(datasets.DatasetError, match=f"frame {bomb!r} claims more pixels"):
    predict.clip_frame_paths(str(folder), onset=None, offset=None)


# -- item 19: a formula cell without a saved value ------------------------------------------------

def test_a_formula_cell_without_a_saved_value_is_named_with_the_reason(tmp_path):
  root = _casme2(tmp_path)
  table = _coding_table([ROW, ROW2])
  table[2][5] = "=D3+4"     # OffsetFrame of the second row (F3): openpyxl saves no value for it
  writers.write_sheet(os.path.join(root, CODING), "Sheet1", table)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_index("casme2", root)
  message = str(e.value)
  assert CODING in message and "cell F3 ('OffsetFrame') holds the formula '=D3+4'" in message
  assert "without computing them" in message and "save it again" in message


def test_formula_cells_the_reader_does_not_use_are_not_an_error(tmp_path):
  root = fake_trees.write_samm_tree(tmp_path, [dict(
      subject="006", filename="006_1_2", onset=5562, apex=5566, offset=5570, action_units="4",
      emotion="Anger")])   # its Duration column is a formula with no saved value, as in SAMM
  assert len(datasets.load_index("samm", root).clips) == 1


# -- item 18: what a killed synthetic-data generation leaves --------------------------------------

def test_a_killed_generation_leaves_nothing_after_the_next_run(tmp_path, monkeypatch, capsys):
  import signal
  import subprocess
  import sys
  root = tmp_path / "data" / "synthetic"
  child = subprocess.Popen([sys.executable, "-c", (
      "import sys, time\n"
      "from cmnet_jax.datasets import synthetic\n"
      "def slow(settings, folder):\n"
      "  open(folder + '/half.jpg', 'w').close(); print('writing', flush=True); time.sleep(300)\n"
      "synthetic.write_tree = slow\n"
      "from configs import tiny\n"
      "synthetic.generate(tiny.get_config().synthetic, sys.argv[1])\n"), str(root)],
      stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  try:
    assert child.stdout.readline().strip() == "writing"
    live = sorted(os.listdir(root.parent))
    assert [e.split("-")[0] for e in live] == [".synthetic.lock", ".synthetic.partial"]
    assert synthetic_module().remove_stale(root.parent, "synthetic") == []   # in use: kept
    assert sorted(os.listdir(root.parent)) == live
  finally:
    child.send_signal(signal.SIGKILL)
    child.wait()
  synthetic = synthetic_module()
  monkeypatch.setattr(synthetic, "write_tree", lambda settings, folder: {"frames": 0})
  synthetic.generate(tiny_synthetic(), root)   # the next run
  assert os.listdir(root.parent) == ["synthetic"]
  out = capsys.readouterr().out
  assert all(f"removed {root.parent / name}, left by a synthetic-data generation that was killed"
             in out for name in live)


def synthetic_module():
  from cmnet_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
  return synthetic


def test_stale_folders_without_a_lock_are_removed_only_when_old(tmp_path, capsys):
  synthetic = synthetic_module()
  for name in (".tree.partial-old1", ".tree.old-old2", ".tree.partial-new3", ".other.partial-x"):
    (tmp_path / name / "Cropped").mkdir(parents=True)
  hour_ago = os.path.getmtime(tmp_path) - 3600
  for name in (".tree.partial-old1", ".tree.old-old2", ".other.partial-x"):
    os.utime(tmp_path / name, (hour_ago, hour_ago))
  assert sorted(synthetic.remove_stale(tmp_path, "tree")) == [".tree.old-old2",
                                                               ".tree.partial-old1"]
  assert sorted(os.listdir(tmp_path)) == [".other.partial-x", ".tree.partial-new3"]
  assert "removed" in capsys.readouterr().out


def tiny_synthetic():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config().synthetic.to_dict()
  config.update(num_subjects=1, clips_per_class=1)
  return config


# -- further cases ---------------------------------------------------------------------------------

def test_a_frame_name_that_is_not_utf8_is_indexed_fingerprinted_and_decoded(tmp_path):
  """A zip extracted with another character set (GBK names from a Chinese release): the
  fingerprint raised UnicodeEncodeError."""
  from cmnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  root = _casme2(tmp_path)
  folder = os.path.join(root, "Cropped", "sub01", "EP02_01f")
  os.rename(os.path.join(folder, "reg_img47.jpg"),
            os.path.join(os.fsencode(folder), b"reg_img\xb2\xe2" + b"47.jpg"))
  index = datasets.load_index("casme2", root)
  clip = index.clips[0]
  assert clip.frame_numbers == tuple(range(46, 55))
  fingerprint, _, _ = input_pipeline.fingerprints(index)
  assert len(fingerprint) == 64
  assert frames.read_frames(clip, list(range(9)), image_size=4).shape == (9, 4, 4, 3)


@pytest.mark.parametrize("kind", ["named pipe", "device", "folder"])
def test_an_entry_named_like_a_frame_that_is_not_a_file_is_named_never_read(tmp_path, kind):
  """A named pipe called reg_img47.jpg made indexing wait forever (reading it blocks)."""
  import signal  # pylint: disable=g-import-not-at-top
  root = _casme2(tmp_path)
  path = os.path.join(root, "Cropped", "sub01", "EP02_01f", "reg_img47.jpg")
  os.remove(path)
  {"named pipe": os.mkfifo, "device": lambda p: os.symlink("/dev/zero", p),
   "folder": os.mkdir}[kind](path)

  def hang(*_):
    raise TimeoutError("indexing waited on the named pipe")
  previous = signal.signal(signal.SIGALRM, hang)
  signal.alarm(20)
  try:
    with pytest.raises(datasets.DatasetError) as e:
      datasets.load_index("casme2", root)
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
  assert f"frame 47 {path!r} is a {kind}, not an image file" in str(e.value)


@pytest.mark.parametrize("encoding,delimiter", [("utf-8", ";"), ("utf-8", "\t"),
                                                ("utf-16", "\t"), ("utf-8-sig", ",")])
def test_csv_annotations_saved_by_excel_in_other_forms_are_read(tmp_path, encoding, delimiter):
  """Semicolons (Excel where the decimal mark is a comma) gave "no header row whose first cell
  is 'Subject'"; UTF-16 ("Unicode Text") a codec error."""
  root = _casme2(tmp_path)
  os.remove(os.path.join(root, CODING))
  table = _coding_table([ROW, ROW2])
  text = "\r\n".join(delimiter.join("" if v is None else str(v) for v in values)
                     for values in table) + "\r\n"
  with open(os.path.join(root, "CASME2-coding-x.csv"), "w", encoding=encoding, newline="") as f:
    f.write(text)
  index = datasets.load_index("casme2", root)
  assert [(c.subject, c.clip_id, c.offset) for c in index.clips] == [
      ("sub01", "EP02_01f", 54), ("sub02", "EP03_02", 9)]


def test_a_csv_in_another_character_set_says_so_and_how_to_save_it(tmp_path):
  root = _casme2(tmp_path)
  fake_trees.write_megc2019_csv(tmp_path / "combined_3class_gt.csv", [
      ("casme2", "sub01", "EP02_01f", 1)])
  with open(tmp_path / "combined_3class_gt.csv", "ab") as f:
    f.write("casme2,sub02,EP03_02,0 # 厌恶\r\n".encode("gbk"))
  with pytest.raises(datasets.DatasetError, match=r"is not UTF-8 text \(byte 0xd1 on line 2.*"
                     r"save it as UTF-8"):
    datasets.load_index("megc2019", tmp_path, casme2=os.path.basename(root))


def test_a_root_that_is_a_file_and_an_annotation_that_is_a_folder_are_named_as_such(tmp_path):
  (tmp_path / "CASME2.zip").write_bytes(b"PK")
  with pytest.raises(datasets.DatasetError, match="CASME2.zip' is a file, not a folder"):
    datasets.load_index("casme2", tmp_path / "CASME2.zip")
  root = _casme2(tmp_path)
  os.mkdir(os.path.join(root, "coding"))
  with pytest.raises(datasets.DatasetError, match="coding' is not a file"):
    datasets.load_index("casme2", root, annotation="coding")


def test_a_negative_onset_is_a_broken_row(tmp_path):
  """An onset of -3 (frames 46..54 present) was read as 58 frames, 49 of them missing."""
  root = _casme2(tmp_path, [ROW, ROW2])
  writers.write_sheet(os.path.join(root, CODING), "Sheet1",
                      _coding_table([dict(ROW, onset=-3), ROW2]))
  index = datasets.load_index("casme2", root)
  assert [c.clip_id for c in index.clips] == ["EP03_02"]
  assert index.skipped[0].reason == ("broken row: onset -3 / offset 54 do not form a frame range "
                                     "(frame numbers are never negative)")


def test_a_clip_of_fewer_than_three_frames_is_skipped_with_the_reason(tmp_path):
  """onset = offset trained on one frame repeated: a clip without motion, silently (predict
  refuses such a clip)."""
  root = _casme2(tmp_path, [dict(ROW, onset=46, apex=46, offset=46), ROW2])
  index = datasets.load_index("casme2", root)
  assert [c.clip_id for c in index.clips] == ["EP03_02"]
  assert index.skipped[0].reason == ("1 frame(s) between onset 46 and offset 46; a clip needs at "
                                     "least 3 (onset, apex and offset) to show a motion")
  smic = fake_trees.write_smic_tree(tmp_path / "SMIC", [
      dict(subject="s1", emotion="negative", clip="s1_ne_01", frames=[5, 6]),
      dict(subject="s1", emotion="positive", clip="s1_po_01", frames=[1, 2, 3])])
  index = datasets.load_index("smic", smic)
  assert [c.clip_id for c in index.clips] == ["s1_po_01"]
  assert [s.item for s in index.skipped] == ["smic s1/s1_ne_01"]


def test_a_sheet_resaved_by_pandas_with_its_index_column_is_read(tmp_path):
  """`df.to_excel(...)` writes an unnamed index column first: "no header row whose first cell
  is 'Subject'"."""
  root = _casme2(tmp_path)
  table = _coding_table([ROW, ROW2])
  table = [[None] + table[0]] + [[i] + values for i, values in enumerate(table[1:])]
  writers.write_sheet(os.path.join(root, CODING), "Sheet1", table)
  index = datasets.load_index("casme2", root)
  assert [(c.subject, c.clip_id, c.apex) for c in index.clips] == [
      ("sub01", "EP02_01f", 50), ("sub02", "EP03_02", 7)]


def test_a_filename_with_a_trailing_slash_names_the_clip_without_it(tmp_path):
  """'EP02_01f/' (pasted from a file manager) became the clip id written to predictions.txt."""
  root = _casme2(tmp_path)
  writers.write_sheet(os.path.join(root, CODING), "Sheet1",
                      _coding_table([dict(ROW, filename="EP02_01f/"), ROW2]))
  assert [c.clip_id for c in datasets.load_index("casme2", root).clips] == ["EP02_01f", "EP03_02"]


def test_a_megc2019_csv_with_a_header_line_is_read(tmp_path):
  """A header line (`database,subject,filename,class`) was "line 1: expected ..."."""
  fake_trees.write_casme2_tree(tmp_path / "CASME2", [ROW, ROW2])
  fake_trees.write_megc2019_csv(tmp_path / "combined_3class_gt.csv", [
      ("Database", "Subject", "Filename", "Class"), ("casme2", "sub01", "EP02_01f", 1)])
  index = datasets.load_index("megc2019", tmp_path)
  assert [(c.clip_id, c.label) for c in index.clips] == [("EP02_01f", 1)]
  fake_trees.write_megc2019_csv(tmp_path / "combined_3class_gt.csv", [
      ("casme2", "sub01", "EP02_01f", 1), ("Database", "Subject", "Filename", "Class")])
  with pytest.raises(datasets.DatasetError, match="line 2: expected 'database,subject"):
    datasets.load_index("megc2019", tmp_path)   # only a first line may name the columns


def test_a_frames_folder_linked_from_elsewhere_is_followed(tmp_path):
  """A link the user made (Cropped -> a bigger disk) is the user's layout, and is followed;
  annotation values cannot lead out of the folder (item 5)."""
  root = _casme2(tmp_path)
  elsewhere = tmp_path / "big_disk" / "Cropped"
  os.makedirs(elsewhere.parent)
  os.rename(os.path.join(root, "Cropped"), elsewhere)
  os.symlink(elsewhere, os.path.join(root, "Cropped"))
  assert len(datasets.load_index("casme2", root).clips) == 2


def test_a_damaged_frame_hash_cache_is_rebuilt(tmp_path):
  from cmnet_jax.datasets import hashes  # pylint: disable=g-import-not-at-top
  frame = tmp_path / "reg_img1.jpg"
  frame.write_bytes(b"abc")
  os.utime(frame, ns=(10**18, 10**18))
  cache_file = tmp_path / "frame-hashes.json"
  cache_file.write_text('{"format": 1, "files": {')     # truncated
  cache = hashes.HashCache(cache_file)
  digest = cache.digest(str(frame))
  cache.save()
  assert hashes.HashCache(cache_file).digest(str(frame)) == digest == hashes.hash_file(str(frame))
