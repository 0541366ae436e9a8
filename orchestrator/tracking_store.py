"""Is a tracking store usable? Judged in seconds and writing nothing, before Ray starts or a
reading command opens it: MLflow's own client would retry an absent server for minutes, create a
missing SQLite file, or fail mid-sweep. Imports nothing heavy (MLflow only to probe a server,
SQLAlchemy only for a database's driver), so `lth query` and `lth --help` stay fast.

Also where a new SQLite store is created (`create_store`): under a lock, since MLflow creates its
tables without one and drivers starting together would race."""
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
    against `base` (trials do not run where `lth` was started), and written without %-escapes
    (`plain_sqlite_uri`)."""
    uri = plain_sqlite_uri(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and sqlite_file(uri) is not None:
        uri = "sqlite:///" + str((base / uri[len("sqlite:///") :]).resolve())
    return uri


def plain_sqlite_uri(uri: str) -> str:
    """A `sqlite:///` URI with its path's %-escapes written out (`my%20dir` -> `my dir`): SQLAlchemy
    unescapes the path it opens, but MLflow creates the database's folder from the path as written,
    so `sqlite:///my%20dir/mlflow.db` would leave an empty `my%20dir/` beside the `my dir/` it uses.
    A path whose unescaped form cannot be written in a URI (a '?' or '%' in it) is left as it is,
    for `check_tracking` to refuse."""
    if not uri.startswith("sqlite:///"):
        return uri
    path, question, query = uri[len("sqlite:///") :].partition("?")
    plain = unquote(path)
    if plain == path or "?" in plain or "%" in plain:
        return uri
    return f"sqlite:///{plain}{question}{query}"


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
        problem = _driver_problem(uri, engine)
        if problem:
            raise TrackingUnavailable(f"MLflow tracking store {where}: {problem}")
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


#: SQLAlchemy's drivers for each database MLflow supports (the first: what a bare `postgresql://`
#: etc. loads, in SQLAlchemy 2.1), and the package pip installs each from.
DRIVERS = {
    "postgresql": ("psycopg", "psycopg2", "pg8000"),
    "mysql": ("mysqldb", "pymysql", "mysqlconnector"),
    "mssql": ("pyodbc", "pymssql"),
}
DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pg8000": "pg8000", "mysqldb": "mysqlclient",
    "pymysql": "PyMySQL", "mysqlconnector": "mysql-connector-python", "pyodbc": "pyodbc", "pymssql": "pymssql",
}


def _driver_problem(uri: str, engine: str) -> str | None:
    """Why SQLAlchemy could not load the Python driver of a database URI (None if it can), with the
    package to install, and an installed driver to write in the URI instead."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        return f"SQLAlchemy has no such database driver ({error}); drivers for {engine}: {', '.join(DRIVERS[engine])}"
    try:
        dialect.import_dbapi()
        return None
    except ImportError as error:
        reason = str(error)
    driver = dialect.driver
    said = f"{engine}+{driver}://" if "+" in uri.split("://", 1)[0] else f"{engine}:// (SQLAlchemy's default driver)"
    problem = f"the database driver {driver} for {said} is not installed ({reason}): pip install {DRIVER_PACKAGES.get(driver, driver)}"
    others = [other for other in DRIVERS[engine] if other != driver]
    installed = [other for other in others if _loads(f"{engine}+{other}://")]
    if installed:
        return f"{problem}, or write {engine}+{installed[0]}:// in the URI to use {installed[0]}, which is installed"
    return f"{problem}, or use another driver: {engine}+{others[0]}:// (pip install {DRIVER_PACKAGES[others[0]]})"


def _loads(uri: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        make_url(uri).get_dialect().import_dbapi()
        return True
    except Exception:  # noqa: BLE001 (any failure to load means: not usable here)
        return False


def sqlite_file(uri: str) -> Path | None:
    """The database file a `sqlite:///...` URI names (None for an in-memory or empty one), read as
    SQLAlchemy reads it (the query cut off, %-escapes unescaped)."""
    path = unquote(uri.split(":///", 1)[1].split("?")[0]) if ":///" in uri else ""
    return None if path in ("", ":memory:") else Path(path)


def _check_sqlite(uri: str, parsed, reading: bool, where: str) -> None:
    from lth_sweep.orchestrator.preflight import cannot_create_in, sqlite_problem

    if parsed.netloc:
        raise TrackingUnavailable(
            f"MLflow tracking store {where}: a SQLite URI names no host: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    file = sqlite_file(uri)
    if file is None:
        said = "holds nothing to read" if reading else (
            "cannot hold a sweep: each process that opens it gets its own, empty one (the trials run in other "
            "processes), gone when the process ends"
        )
        raise TrackingUnavailable(
            f"MLflow tracking store {where}: an in-memory SQLite database {said}; give a file: sqlite:///PATH/mlflow.db"
        )
    written = uri[len("sqlite:///") :].split("?")[0] if uri.startswith("sqlite:///") else ""
    if unquote(written) != written:  # what plain_sqlite_uri could not write out
        raise TrackingUnavailable(
            f"MLflow tracking store {where}: %-escapes in a SQLite path are read two ways: SQLAlchemy opens {file}, while "
            f"MLflow creates folders from the path as written ({written}); write the path without %-escapes (a file or "
            "folder whose name needs '%' or '?' cannot be named in a URI both read alike)"
        )
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
            f"{where} answers HTTP {response.status_code} to MLflow's REST API ({SEARCH_PATH}): {NOT_MLFLOW}"
        )
    answer = _json_object(response)
    if answer is None or not set(answer) <= {"experiments", "next_page_token"}:
        raise TrackingUnavailable(f"{where} answers {SEARCH_PATH} with {_described(response)}, not MLflow's JSON: {NOT_MLFLOW}")
    if "experiments" not in answer and not _answers_as_mlflow(uri, timeout, answer_timeout):
        raise TrackingUnavailable(
            f"{where} answers {SEARCH_PATH} with {{}} and every other request alike, not with MLflow's errors: {NOT_MLFLOW}"
        )


NOT_MLFLOW = "not an MLflow tracking server? (check the port, and any path prefix the server is behind)"
#: A request MLflow refuses in its own way (HTTP 404, JSON with `error_code`): told apart from a web
#: server that answers `{}` to anything, where an MLflow store without experiments answers `{}` too.
NAMED_PATH = "/api/2.0/mlflow/experiments/get-by-name"


def _json_object(response) -> dict | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _described(response) -> str:
    kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "no Content-Type"
    what = "an HTML page" if "html" in kind or response.text.lstrip()[:1] == "<" else f"{len(response.content):,} bytes"
    return f"{what} (HTTP {response.status_code}, {kind})"


def _answers_as_mlflow(uri: str, timeout: float, answer_timeout: float) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri), NAMED_PATH, "GET", params={"experiment_name": "lth-sweep probe: no such experiment"},
            max_retries=0, timeout=(timeout, answer_timeout), raise_on_status=False,
        )
    except (MlflowException, OSError):
        return False
    return "error_code" in (_json_object(response) or {})


def create_store(uri: str) -> None:
    """Creates the SQLite store `uri` names, where it holds no MLflow tables yet, with nobody else
    creating it meanwhile. MLflow creates its tables (and runs its migrations, and adds the Default
    experiment) without a lock: drivers creating one new store at the same moment failed with
    `table latest_metrics already exists` and the like. Here MLflow does it holding an exclusive
    flock on the database's folder: a lock no other program takes, which leaves no lock file behind
    and is apart from SQLite's own locks on the database file. A filesystem without flock (some
    network filesystems) creates it as MLflow does. Other stores: left to MLflow."""
    file = sqlite_file(uri) if uri.lower().startswith("sqlite") else None
    if file is None:
        return
    import fcntl

    from mlflow.tracking import MlflowClient

    file.parent.mkdir(parents=True, exist_ok=True)  # as MLflow would
    folder = os.open(file.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
        except OSError:
            pass
        MlflowClient(uri).search_experiments(max_results=1)  # MLflow's store, its tables made if missing
    finally:
        os.close(folder)  # and the lock with it
