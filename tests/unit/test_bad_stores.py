"""Bad stores end with a message naming the setting, exit 2, no traceback, before Ray, writing
nothing (issue 18): the storage path and tracking store of `lth sweep`, the store `lth query` and
`lth tickets` read (which they never create), and several sweeps sharing a name.

Each case runs the real `lth` in a subprocess (tests/support/lth_cli.py: `ray.init` replaced by a
function that exits 99 printing "RAY STARTED").
"""
from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.lth_cli import files_in, run_lth

# Stand-ins for a file's bytes, made by the `stores` fixture: a real MLflow database holding two
# sweeps named "twin" (sweep ids aaaa..., bbbb...), the same at an old schema version, and a
# SQLite database that is not MLflow's.
TWINS, OLD_SCHEMA, NOT_MLFLOW = "<twins>", "<old schema>", "<not mlflow>"
LOCKED = "<twins, held by another writer>"  # TWINS, with a write transaction open on it while `lth` runs
READ_ONLY_FOLDER = "<read-only folder>"
GARBAGE = bytes(range(256)) * 8

TWIN_A, TWIN_B = "aaaa1111aaaa1111", "bbbb2222bbbb2222"


@dataclass
class Case:
    id: str
    files: dict[str, bytes | str]  # written into tmp_path first
    # "{tmp}", "{port}" (a port nothing listens on) and "{web}" (a web server, not MLflow's: 404, or 200
    # with an HTML page under /html and `{}` under /json) are filled in
    args: list[str]
    code: int
    says: tuple[str, ...]  # on stderr (on stdout for exit 0)
    env: dict[str, str] = field(default_factory=dict)
    skip_as_root: bool = False  # root writes in a folder without write permission
    skip_if_installed: str = ""  # a module whose absence the case is about


SWEEP = ["sweep"]  # the quickstart, with --set overrides
CASES = [
    # --- 1. `lth sweep`: storage --------------------------------------------------------------
    Case("storage-in-proc", {}, SWEEP + ["--set", "storage=/proc/x"], 2, ("storage '/proc/x'", "cannot create folders in /proc")),
    Case("storage-under-a-file", {"afile": b"x"}, SWEEP + ["--set", "storage=afile/runs"], 2,
         ("storage 'afile/runs'", "afile is a file, not a folder")),
    Case("storage-unwritable-folder", {"ro": READ_ONLY_FOLDER}, SWEEP + ["--set", "storage=ro/runs"], 2,
         ("storage 'ro/runs'", "cannot create folders in", "Permission denied"), skip_as_root=True),
    Case("storage-unknown-scheme", {}, SWEEP + ["--set", "storage=foo://bucket/runs"], 2,
         ("storage 'foo://bucket/runs'", "no filesystem for the scheme 'foo'")),
    # --- 1. `lth sweep`: tracking store -------------------------------------------------------
    Case("tracking-sqlite-in-proc", {}, SWEEP + ["--set", "tracking.uri=sqlite:////proc/x.db"], 2,
         ("sqlite:////proc/x.db (tracking.uri)", "cannot create files in /proc")),
    Case("tracking-unknown-scheme", {}, SWEEP + ["--set", "tracking.uri=foo://bar"], 2,
         ("foo://bar (tracking.uri)", "unknown scheme 'foo'")),
    Case("tracking-not-a-uri", {}, SWEEP + ["--set", "tracking.uri=not-a-uri"], 2,
         ("not-a-uri (tracking.uri)", "not a URI")),
    Case("tracking-bad-uri", {"sweep.yaml": b"tracking:\n  uri: '::bad uri::'\n"}, ["sweep", "sweep.yaml"], 2,
         ("::bad uri:: (tracking.uri)", "not a URI")),
    Case("tracking-file-store", {}, SWEEP + ["--set", "tracking.uri=file:///proc/x"], 2,
         ("file:///proc/x (tracking.uri)", "MLflow's file store", "since 3.13")),
    Case("tracking-corrupt-default-db", {"mlflow.db": GARBAGE}, SWEEP, 2,
         ("mlflow.db (the default store", "not an MLflow database")),
    Case("tracking-server-down-names-env", {}, SWEEP, 2,
         ("MLflow tracking server http://127.0.0.1:{port} ($MLFLOW_TRACKING_URI) is unreachable", "connection refused"),
         env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}),
    Case("tracking-a-web-server-not-mlflow", {}, SWEEP + ["--set", "tracking.uri=http://127.0.0.1:{web}"], 2,
         ("http://127.0.0.1:{web} (tracking.uri) answers HTTP 404 to MLflow's REST API", "not an MLflow tracking server")),
    # --- (issue 29) stores that cannot hold a sweep, or that answer as something else ----------
    Case("tracking-sqlite-in-memory", {}, SWEEP + ["--set", "tracking.uri=sqlite://"], 2,
         ("sqlite:// (tracking.uri)", "an in-memory SQLite database cannot hold a sweep", "sqlite:///PATH/mlflow.db")),
    Case("tracking-sqlite-memory-path", {"sweep.yaml": b"tracking: {uri: 'sqlite:///:memory:'}\n"}, ["sweep", "sweep.yaml"], 2,
         ("sqlite:///:memory: (tracking.uri)", "an in-memory SQLite database")),
    Case("query-sqlite-in-memory", {}, ["query", "--sweep", "twin", "--tracking-uri", "sqlite://"], 2,
         ("sqlite:// (--tracking-uri)", "an in-memory SQLite database")),
    Case("tracking-mysql-without-its-driver", {}, SWEEP + ["--set", "tracking.uri=mysql://u@127.0.0.1:{web}/lth"], 2,
         ("mysql://u@127.0.0.1:{web}/lth (tracking.uri)", "mysqldb", "pip install mysqlclient", "mysql+pymysql://"),
         skip_if_installed="MySQLdb"),
    Case("tracking-postgresql-without-its-driver", {}, SWEEP + ["--set", "tracking.uri=postgresql:///lth"], 2,
         ("postgresql:///lth (tracking.uri)", "psycopg", "pip install 'psycopg[binary]'"), skip_if_installed="psycopg"),
    Case("tracking-a-web-page-not-mlflow", {}, SWEEP + ["--set", "tracking.uri=http://127.0.0.1:{web}/html"], 2,
         ("http://127.0.0.1:{web}/html (tracking.uri) answers", "text/html", "not an MLflow tracking server")),
    Case("tracking-empty-json-not-mlflow", {}, SWEEP + ["--set", "tracking.uri=http://127.0.0.1:{web}/json"], 2,
         ("http://127.0.0.1:{web}/json (tracking.uri) answers", "not an MLflow tracking server")),
    Case("query-a-web-page-not-mlflow", {}, ["query", "--sweep", "twin", "--tracking-uri", "http://127.0.0.1:{web}/html"], 2,
         ("http://127.0.0.1:{web}/html (--tracking-uri) answers", "not an MLflow tracking server")),
    Case("tracking-db-held-by-another-writer", {"mlflow.db": LOCKED}, SWEEP, 2,
         ("mlflow.db (the default store", "is locked", "held by another writer", "try again")),
    Case("query-db-held-by-another-writer", {"mlflow.db": LOCKED}, ["query", "--sweep", "twin"], 2,
         ("is locked", "held by another writer", f"process {os.getpid()}")),
    # --- 2. `lth query`, `lth tickets` read and never create ----------------------------------
    Case("query-missing-db", {}, ["query", "--sweep", "twin"], 2, ("no database at {tmp}/mlflow.db", "never creates")),
    Case("tickets-empty-file", {"mlflow.db": b""}, ["tickets", "--sweep", "twin"], 2, ("mlflow.db is an empty file",)),
    Case("query-garbage-file", {"x.db": GARBAGE}, ["query", "--sweep", "twin", "--tracking-uri", "sqlite:///x.db"], 2,
         ("sqlite:///x.db (--tracking-uri)", "not an MLflow database")),
    Case("tickets-sqlite-not-mlflow", {"mlflow.db": NOT_MLFLOW}, ["tickets", "--sweep", "twin"], 2,
         ("not an MLflow database", "without MLflow's tables")),
    Case("query-old-schema", {"mlflow.db": OLD_SCHEMA}, ["query", "--sweep", "twin"], 2,
         ("older schema", "mlflow db upgrade")),
    Case("tickets-server-down", {}, ["tickets", "--sweep", "twin", "--tracking-uri", "http://127.0.0.1:{port}"], 2,
         ("MLflow tracking server http://127.0.0.1:{port} (--tracking-uri) is unreachable", "connection refused")),
    # --- 3. several sweeps sharing a name ------------------------------------------------------
    Case("query-two-sweeps", {"mlflow.db": TWINS}, ["query", "--sweep", "twin"], 2,
         ("2 sweeps are named 'twin'", "--sweep-id", TWIN_A, TWIN_B, "lineages")),
    Case("tickets-two-sweeps", {"mlflow.db": TWINS}, ["tickets", "--sweep", "twin"], 2,
         ("2 sweeps are named 'twin'", "--sweep-id", TWIN_A, TWIN_B)),
    Case("query-sweep-id-matches-none", {"mlflow.db": TWINS}, ["query", "--sweep", "twin", "--sweep-id", "cccc"], 2,
         ("starting 'cccc'", TWIN_A, TWIN_B)),
    Case("query-sweep-id-picks-one", {"mlflow.db": TWINS}, ["query", "--sweep", "twin", "--sweep-id", "bbbb", "--format", "csv"], 0,
         ("lineage-b2",)),
    # --- (issue 29) a %-escaped SQLite path is read as SQLAlchemy reads it, and nothing is created --
    Case("query-percent-escaped-path", {"my dir/mlflow.db": TWINS},
         ["query", "--sweep", "twin", "--sweep-id", "bbbb", "--format", "csv", "--tracking-uri", "sqlite:///my%20dir/mlflow.db"], 0,
         ("lineage-b2",)),
    Case("query-percent-escaped-path-missing", {},
         ["query", "--sweep", "twin", "--tracking-uri", "sqlite:///my%20dir/mlflow.db"], 2,
         ("no database at my dir/mlflow.db", "never creates")),
    Case("query-percent-escape-that-cannot-be-written-out", {},
         ["query", "--sweep", "twin", "--tracking-uri", "sqlite:///a%253Fb.db"], 2,
         ("sqlite:///a%253Fb.db (--tracking-uri)", "%-escapes in a SQLite path are read two ways", "SQLAlchemy opens a%3Fb.db")),
    Case("query-percent-escaped-path-no-sweep", {"my dir/mlflow.db": TWINS},
         ["query", "--sweep", "nope", "--tracking-uri", "sqlite:///my%20dir/mlflow.db"], 2, ("no sweep named 'nope'",)),
    # --- (issue 29) a margin for a metric that is not judged is refused, not ignored -----------
    Case("tickets-tolerance-of-an-unknown-metric", {"mlflow.db": TWINS},
         ["tickets", "--sweep", "twin", "--sweep-id", "aaaa", "--tolerance", "test/accc=0.5"], 2,
         ("--margin/--tolerance test/accc=0.5", "'test/accc' is not judged", "did you mean test/acc?")),
    Case("tickets-margin-of-a-metric-not-judged", {"mlflow.db": TWINS},
         ["tickets", "--sweep", "twin", "--sweep-id", "aaaa", "--margin", "test/loss=0.5", "--metric", "test/acc"], 2,
         ("--margin/--tolerance test/loss=0.5", "'test/loss' is not judged", "judged: test/acc, winning")),
]


def _mlflow_store(path: Path) -> None:
    """Two sweeps named "twin" (two configs): A with one lineage, B (started later) with two."""
    from mlflow.tracking import MlflowClient

    from lth_sweep.trainables import record

    client = MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("lth-sweep")
    for sweep_id, lineages in ((TWIN_A, ["lineage-a1"]), (TWIN_B, ["lineage-b1", "lineage-b2"])):
        tags = {record.SWEEP: "twin", record.KIND: record.SWEEP_KIND, record.ID: sweep_id}
        parent = client.create_run(experiment, tags=tags, run_name="twin").info.run_id
        for lineage in lineages:
            tags = {record.SWEEP: "twin", record.KIND: record.LINEAGE_KIND, record.ID: lineage, record.PARENT: parent,
                    record.METHOD: "imp", record.TRUNK: "trunk-" + sweep_id}
            run = client.create_run(experiment, tags=tags, run_name=lineage).info.run_id
            client.log_metric(run, "test/acc", 0.9, step=1)
            client.log_metric(run, record.ROUND_DONE, 0.5, step=1)
            client.set_terminated(run)
        client.set_terminated(parent)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("stores")
    _mlflow_store(folder / "twins.db")
    (folder / "old.db").write_bytes((folder / "twins.db").read_bytes())
    with sqlite3.connect(folder / "old.db") as connection:  # MLflow's first migration
        connection.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    with sqlite3.connect(folder / "other.db") as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    return {name: (folder / file).read_bytes() for name, file in ((TWINS, "twins.db"), (OLD_SCHEMA, "old.db"), (NOT_MLFLOW, "other.db"))}


def _free_port() -> int:
    with socket.socket() as bound:  # bound and released: nothing listens there
        bound.bind(("127.0.0.1", 0))
        return bound.getsockname()[1]


class _NotFound(http.server.BaseHTTPRequestHandler):
    """404, except under /html (200 with a web page) and /json (200 with `{}`): web servers, not MLflow."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        for prefix, kind, body in (("/html/", "text/html", b"<html><body>Welcome</body></html>"), ("/json/", "application/json", b"{}")):
            if self.path.startswith(prefix):
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web_port():
    """A web server that answers 404 to everything: some other service on the port given."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under `folder`."""
    folders = {str(path.relative_to(folder)): None for path in folder.rglob("*") if path.is_dir()}
    return folders | {name: (folder / name).read_bytes() for name in files_in(folder)}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_store_exits_2_naming_it_before_ray_and_writes_nothing(case: Case, tmp_path, stores, web_port):
    if case.skip_as_root and os.geteuid() == 0:
        pytest.skip("root writes in a folder without write permission")
    if case.skip_if_installed and importlib.util.find_spec(case.skip_if_installed):
        pytest.skip(f"{case.skip_if_installed} is installed")
    fill = {"tmp": str(tmp_path), "port": str(_free_port()), "web": str(web_port)}
    for name, content in case.files.items():
        if content == READ_ONLY_FOLDER:
            (tmp_path / name).mkdir(mode=0o555)
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(stores[TWINS if content == LOCKED else content] if isinstance(content, str) else content)
    before = _snapshot(tmp_path)
    env = {key: value.format(**fill) for key, value in case.env.items()}

    with contextlib.ExitStack() as held:
        for name in (name for name, content in case.files.items() if content == LOCKED):
            writer = held.enter_context(contextlib.closing(sqlite3.connect(tmp_path / name, isolation_level=None)))
            writer.execute("BEGIN EXCLUSIVE")  # what a writer holds while it writes, e.g. another sweep's driver
        done = run_lth([arg.format(**fill) for arg in case.args], tmp_path, env=env or None, timeout=150)

    message = done.stdout if case.code == 0 else done.stderr
    assert done.code == case.code, done.stderr[-3000:]
    for text in case.says:
        assert text.format(**fill) in message, message[-3000:]
    assert not done.traceback, done.stderr[-3000:]
    assert "RAY STARTED" not in done.stderr
    for internal in ("model.dict[", "function-after[", "pydantic"):
        assert internal not in done.stderr
    assert _snapshot(tmp_path) == before  # no store, folder or probe left, no database modified
    assert not Path("/proc/x.db").exists() and not Path("/proc/x").exists()
