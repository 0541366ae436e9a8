"""A real MLflow tracking server on this machine, set up the way deploy/ runs it on Kubernetes:
for the tests of that set-up (tests/infrastructure/) and for bench/mlflow_logging.py.

PostgreSQL (Debian's packages, installed with apt-get if missing) holds both the tracking store
and the auth store; artifacts go to a folder through the server's proxy (`--serve-artifacts`);
MLflow's basic auth guards everything, with an admin password and a Flask secret key generated
here. Database passwords reach libpq through `PGPASSWORD`, never through a URI, as in deploy/.
Everything listens on loopback ports chosen at start, and is stopped and deleted at the end.

Failures to install or start anything raise `ServerSetupError` with the relevant log: a test
that needs the server must fail, not skip, when it cannot have one.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"  # the system user Debian's package creates; postgres refuses to run as root
DB_USER = "mlflow"
ADMIN_USER = "admin"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
# As deploy/k8s/mlflow/mlflow.yaml runs it: gunicorn with threaded workers, not MLflow's default
# uvicorn, whose multi-worker mode leaves Nagle's algorithm on (uvicorn issue #3149): every
# keep-alive request after a connection's first then waits ~40 ms on the client's delayed ACK.
# gunicorn's longest request line is 4094 bytes by default; MLflow's get-history-bulk (the UI's
# charts, `lth query`) puts up to 100 run ids in the URL, ~4.1 kB: 8190 is gunicorn's maximum.
GUNICORN_OPTIONS = "--worker-class gthread --threads 4 --limit-request-line 8190"


class ServerSetupError(RuntimeError):
    """PostgreSQL or MLflow could not be installed or started."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_command(command: list[str], what: str, env: dict | None = None, timeout: float = 600,
                error: type[Exception] = ServerSetupError) -> str:
    """Runs a set-up command (apt-get, initdb, ...) and returns its stdout; if it cannot be run or
    fails, raises `error` naming the command, with the end of its output."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as failure:
        raise error(f"{what}: {' '.join(command)}: {failure}") from None
    if done.returncode != 0:
        raise error(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def postgres_binary(name: str) -> str | None:
    """Debian keeps initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = shutil.which(name)
    if found:
        return found
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (bindir / name).exists():
            return str(bindir / name)
    return None


def ensure_postgres() -> float:
    """Installs Debian's `postgresql` if initdb/pg_ctl are missing; returns the seconds it took."""
    if postgres_binary("initdb") and postgres_binary("pg_ctl"):
        return 0.0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServerSetupError("PostgreSQL (initdb, pg_ctl) is missing and cannot be installed: needs root and apt-get")
    start = time.monotonic()
    env = {**os.environ, **APT_ENV}
    run_command(["apt-get", "update"], "apt-get update", env)
    run_command(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"], "apt-get install postgresql", env)
    if not (postgres_binary("initdb") and postgres_binary("pg_ctl")):
        raise ServerSetupError("apt-get installed postgresql but initdb/pg_ctl are not to be found")
    return time.monotonic() - start


def _wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerSetupError(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-5000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServerSetupError(f"mlflow server not healthy at {url} after {timeout:.0f} s:\n{log.read_text()[-5000:]}")


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on a loopback port, run by a non-root user."""

    root: Path
    port: int = field(default_factory=free_port)
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    db_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            run_command(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], "useradd postgres")
        return ["runuser", "-u", PG_USER, "--", *command]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(self.superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
            shutil.chown(pwfile, PG_USER, PG_USER)
        pwfile.chmod(0o600)
        run_command(
            self._as_owner([postgres_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                            "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile}"]),
            "initdb",
        )
        pwfile.unlink()
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        run_command(
            self._as_owner([postgres_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                            "-o", options, "-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
        self._create_databases()

    def _create_databases(self) -> None:
        import psycopg2

        try:
            connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                          password=self.superuser_password, dbname="postgres")
        except psycopg2.Error as error:
            raise ServerSetupError(f"cannot connect to the test PostgreSQL: {error}") from None
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD %s", (self.db_password,))
            for database in ("mlflow", "mlflow_auth"):
                cursor.execute(f"CREATE DATABASE {database} OWNER {DB_USER}")
        connection.close()

    def uri(self, database: str) -> str:
        """Without the password: libpq takes it from PGPASSWORD. The driver is named: SQLAlchemy
        2.1 maps a bare postgresql:// to psycopg 3, not psycopg2."""
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._as_owner([postgres_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60)


@dataclass
class MlflowServer:
    """`mlflow server --app-name basic-auth` on PostgreSQL, artifacts proxied to a folder."""

    root: Path
    postgres: Postgres
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32))
    workers: int = 2
    auth_cache_seconds: int = 600  # deploy/'s; 0 re-hashes the password on every request
    process: subprocess.Popen | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "mlflow-server.log"

    def start(self, timeout: float = 180) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "artifacts").mkdir(exist_ok=True)
        auth_ini = self.root / "basic_auth.ini"
        # The same file as deploy/k8s/mlflow/mlflow.yaml's ConfigMap: no password in it.
        auth_ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {self.postgres.uri('mlflow_auth')}\n"
            f"admin_username = {ADMIN_USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {self.auth_cache_seconds}\n"
        )
        env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_"))
        }
        env |= {
            "PGPASSWORD": self.postgres.db_password,
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret_key,
        }
        mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
        command = [
            mlflow, "server", "--app-name", "basic-auth",
            "--backend-store-uri", self.postgres.uri("mlflow"),
            "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers), "--gunicorn-opts", GUNICORN_OPTIONS,
        ]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_http(f"{self.url}/health", self.process, self.log, timeout)

    def stop(self) -> None:
        """Kills the server's own process group (MLflow, gunicorn and its workers) at once. Not
        gracefully: the server is thrown away with its data, and gunicorn's graceful stop (SIGTERM,
        or SIGINT) waits out its whole 30 s timeout while any client, such as a sweep's idle Ray
        worker, still holds a keep-alive connection."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_server(**options) -> MlflowServer:
    """PostgreSQL + MLflow (`options`: MlflowServer fields, e.g. `workers`); `timings` holds the
    seconds spent installing and starting each."""
    start = time.monotonic()
    install = ensure_postgres()
    # Not under pytest's tmp_path: it is private to root, and PostgreSQL runs as another user.
    root = Path(tempfile.mkdtemp(prefix="lth-mlflow-server-"))
    root.chmod(0o755)
    postgres = Postgres(root / "postgres")
    server = MlflowServer(root / "mlflow", postgres, **options)
    try:
        t0 = time.monotonic()
        postgres.start()
        t1 = time.monotonic()
        server.start()
        t2 = time.monotonic()
    except BaseException:
        stop_server(server)
        raise
    server.timings = {"apt_install": install, "postgres_start": t1 - t0, "mlflow_start": t2 - t1, "total": t2 - start}
    return server


def stop_server(server: MlflowServer) -> None:
    try:
        server.stop()
    finally:
        try:
            server.postgres.stop()
        finally:
            shutil.rmtree(server.root.parent, ignore_errors=True)
