"""Fixtures of the infrastructure tests: one real PostgreSQL-backed MLflow server with basic auth
for the session (starting one takes tens of seconds), and a non-admin user on it."""
from __future__ import annotations

import secrets
import sys

import pytest

from deploy.local_mlflow_server import start_server, stop_server


@pytest.fixture(scope="session")
def server():
    server = start_server()  # raises, never skips, if PostgreSQL or MLflow cannot be had
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in server.timings.items())
    print(f"\nMLflow test server at {server.url} ready: {timings}", file=sys.stderr)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def sweep_user(server):
    """A non-admin user for sweeps, created by the admin through MLflow's auth API, as the README
    of deploy/ tells an operator to do."""
    password = secrets.token_urlsafe(18)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
        from mlflow.server import get_app_client

        get_app_client("basic-auth", tracking_uri=server.url).create_user("lth-sweep", password)
    return "lth-sweep", password
