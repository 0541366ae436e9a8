"""Helpers for the tests that are not tests themselves (fixtures live in the conftest.py files):

- tiny.py      tiny real specs (a trunk and lineages that train in well under a second), the small
               models for 16 px shapes, and a PruneContext around any model
- sweeps.py    the session's Ray settings, small sweep configs, the environment of a sweep run in a
               child process, and reading a sweep back from MLflow
- lth_cli.py   running `lth` in a subprocess where Ray may not start (the bad-input tests)
- datasets.py  miniature datasets written in their official on-disk formats
- browser.py   a headless Chromium and an `lth ui` server, for the MLflow UI test

The local PostgreSQL-backed MLflow server is deploy/local_mlflow_server.py: bench/ uses it too.
"""
