"""Entry point: `python run.py --config=configs/synthetic.py --workdir=...`.

Placeholder until the training issue lands: it does not train.
"""
import sys


def main() -> int:
  print("cmnet_jax: training is not implemented yet (see the open training issue).", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
