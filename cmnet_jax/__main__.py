"""cmnet_jax: `python -m cmnet_jax [flags]` is the `cmnet-jax` command (`python run.py` in the
checkout); the flags are listed below, the modes in cmnet_jax/cli.py."""
from cmnet_jax import cli

if __name__ == "__main__":
  cli.main()
