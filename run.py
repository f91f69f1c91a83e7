"""cmnet_jax command line, from the checkout: the same command as `cmnet-jax` (`pip install .`).

    python run.py                                    # LOSO on the built-in synthetic set
    python run.py --config=configs/casme2.py --config.data.root=/data/CASME2
    python run.py --config=configs/synthetic.py:quick --workdir=runs/quick  # = synthetic:quick
    python run.py --plugins=mypkg.mylosses --config=configs/tiny.py --config.loss.lambda_peak=0.1
    python run.py --mode=eval --workdir=runs/synthetic         # re-evaluate from checkpoints
    python run.py --mode=predict --workdir=runs/synthetic --frames=/path/to/clip_folder
    python run.py --mode=spot --workdir=runs/synthetic --frames=/path/to/clip_folder
    python run.py --mode=align --config=configs/samm.py --config.data.root=/data/SAMM  # face crops

Flags and modes: `python run.py --helpshort`, and `cmnet_jax/cli.py`.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this checkout's cmnet_jax

from cmnet_jax import cli  # pylint: disable=wrong-import-position  (imports nothing of JAX)

if __name__ == "__main__":
  cli.main()
