"""Helpers for tests, never imported by the library: fake database trees (`fake_trees`) and a
reader of the MEGC log format the runs write (`megc_log`), what a trained workdir holds (`runs`).

    from cmnet_jax.testing import fake_trees, megc_log, runs
"""
