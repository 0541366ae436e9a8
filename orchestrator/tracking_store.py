"""Is a tracking store usable? Judged in seconds and writing nothing, before Ray starts or a
reading command opens it: MLflow's own client would retry an absent server for minutes, create a
missing SQLite file, or fail mid-sweep. Imports nothing heavy (MLflow only to probe a server), so
`lth query` and `lth --help` stay fast."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import unquote, urlparse

PROBE_SECONDS = 5.0  #: to connect: a host that does not accept in 5 s is down or unreachable
#: for a server that accepted the connection to answer: a busy server is slow, not absent (MLflow's
#: own client waits 120 s per request)
ANSWER_SECONDS = 30.0
SEARCH_PATH = "/api/2.0/mlflow/experiments/search"  #: the probe's request: one experiment, read only
DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default: mlflow.db where the command runs


def resolve_uri(uri: str | None, base: Path) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else ./mlflow.db; a relative SQLite path made absolute
    against `base` (trials do not run where `lth` was started)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str((base / uri[len("sqlite:///") :]).resolve())
    return uri


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used: no server answers, it refuses the credentials, or
    the URI names no store lth-sweep can use (an unknown scheme, MLflow's file store, a file that is
    not an MLflow database, a folder nothing can be created in)."""


DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
STORE_SCHEMES = "sqlite:///PATH/mlflow.db, http(s)://HOST:PORT (an MLflow server) or a database (postgresql://, mysql://, mssql://)"


def check_tracking(
    uri: str, timeout: float = PROBE_SECONDS, *, answer_timeout: float = ANSWER_SECONDS, reading: bool = False, source: str = "",
) -> None:
    """Judges a tracking store in seconds, writing nothing, where MLflow's own client would retry
    for minutes (about 4, with backoff), create a store, or fail mid-sweep with a traceback: one
    request without retries to a server, a TCP probe for a database URI, for SQLite the file (an
    MLflow database, or a folder it can be created in), and the scheme itself. `reading`: the store
    must exist already (`lth query`, `lth tickets` never create one). `source`: the setting the
    URI came from, named in the message (e.g. "tracking.uri"). `timeout`: seconds to connect;
    `answer_timeout`: seconds for a server that accepted the connection to answer."""
    where = f"{uri} ({source})" if source else uri
    try:
        parsed = urlparse(uri)
        scheme = parsed.scheme.lower()
        hostname, port = parsed.hostname, parsed.port
    except ValueError as error:
        raise TrackingUnavailable(f"MLflow tracking store {where}: not a valid URI ({error}); use {STORE_SCHEMES}") from None
    engine = scheme.split("+")[0]
    if scheme in ("http", "https"):
        if not hostname:
            raise TrackingUnavailable(f"MLflow tracking server {where}: the URI names no host")
        _probe_server(uri, timeout, answer_timeout, where)
    elif engine == "sqlite":
        _check_sqlite(uri, parsed, reading, where)
    elif engine in DATABASE_PORTS:
        if not hostname:
            return  # a local socket: the database's client says what is wrong, at once
        port = port or DATABASE_PORTS[engine]
        try:
            socket.create_connection((hostname, port), timeout=timeout).close()
        except OSError as error:
            raise TrackingUnavailable(f"MLflow tracking store {where}: no database answers at {hostname}:{port} ({error})") from None
    elif scheme == "file" or not scheme or (len(scheme) == 1 and scheme.isalpha()):  # a path, or C:\\...
        said = "file:// is" if scheme == "file" else "not a URI (no scheme such as sqlite:/// or http://); as a path it is"
        raise TrackingUnavailable(
            f"MLflow tracking store {where}: {said} MLflow's file store, which MLflow refuses since 3.13 "
            f"(maintenance mode) and lth-sweep does not support; use {STORE_SCHEMES}"
        )
    elif scheme not in _other_store_schemes():
        raise TrackingUnavailable(f"MLflow tracking store {where}: unknown scheme {scheme!r}; use {STORE_SCHEMES}")


def _other_store_schemes() -> set[str]:
    """Schemes of MLflow's other tracking stores (databricks, and those of installed plugins)."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        registered = set(_tracking_store_registry._registry)
    except (ImportError, AttributeError):
        registered = {"databricks"}
    return registered - {"", "file", "databricks-uc", "uc"}  # MLflow refuses Unity Catalog as a tracking store


def sqlite_file(uri: str) -> Path | None:
    """The database file a `sqlite:///...` URI names (None for an in-memory or empty one)."""
    path = unquote(uri.split(":///", 1)[1].split("?")[0]) if ":///" in uri else ""
    return None if path in ("", ":memory:") else Path(path)


def _check_sqlite(uri: str, parsed, reading: bool, where: str) -> None:
    from orchestrator.preflight import cannot_create_in, sqlite_problem

    if parsed.netloc:
        raise TrackingUnavailable(
            f"MLflow tracking store {where}: a SQLite URI names no host: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    file = sqlite_file(uri)
    if file is None:
        return
    if file.is_dir():
        raise TrackingUnavailable(f"MLflow tracking store {where}: {file} is a folder, not a database file")
    if file.exists():
        problem = sqlite_problem(file, reading)
        if problem is None and not reading and not os.access(file, os.W_OK):
            problem = f"{file} is read-only"
    elif reading:
        problem = f"no database at {file} (reading never creates a store)"
    elif not file.parent.is_dir():
        what = "is not a folder" if file.parent.exists() else "does not exist"
        problem = f"directory {file.parent} {what}"
    else:
        problem = None
    if problem is None and not reading:  # SQLite creates the database, and its journal beside it
        problem = cannot_create_in(file.parent)
    if problem:
        raise TrackingUnavailable(f"MLflow tracking store {where}: {problem}")


def _probe_server(uri: str, timeout: float, answer_timeout: float, where: str | None = None) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    where = where or uri
    try:
        response = http_request(
            get_default_host_creds(uri), SEARCH_PATH, "GET",
            params={"max_results": 1}, max_retries=0, timeout=(timeout, answer_timeout), raise_on_status=False,
        )
    except (MlflowException, OSError) as error:  # MLflow wraps requests' connection errors
        text = str(error).lower()
        reason = {
            "refused": "connection refused", "read timed out": f"connected, but no answer within {answer_timeout:.0f} s",
            "timed out": f"no connection within {timeout:.0f} s",
        }
        reason = next((said for key, said in reason.items() if key in text), text[:300])
        raise TrackingUnavailable(f"MLflow tracking server {where} is unreachable ({reason}); is it running?") from None
    if response.status_code in (401, 403):
        raise TrackingUnavailable(
            f"MLflow tracking server {where} refused the credentials (HTTP {response.status_code}); "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if response.status_code >= 500:
        raise TrackingUnavailable(f"MLflow tracking server {where} answers HTTP {response.status_code}: {response.text[:200]}")
    if not response.ok:  # a web server, but not MLflow's REST API at this address
        raise TrackingUnavailable(
            f"{where} answers HTTP {response.status_code} to MLflow's REST API ({SEARCH_PATH}): not an MLflow tracking "
            "server? (check the port, and any path prefix the server is behind)"
        )
