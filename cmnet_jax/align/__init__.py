"""Face alignment for databases shipped as raw frames (`python run.py --mode=align`).

- `geometry`: the canonical 5-point template, least-squares similarity, Pillow's affine form.
- `face`: dlib's HOG detector and 68-point landmarker (optional: requirements-align.txt).
- `warp`: one frame read, warped into the crop and written in its own format and colour mode.
- `plan`: which folders to align (found by the database readers) and which files to copy.
- `runner`: the resumable run over a whole database, its progress bar and summary.

Only `face` needs the optional packages, and only when `face.load()` is called.
"""
