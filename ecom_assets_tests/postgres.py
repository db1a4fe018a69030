"""A throwaway PostgreSQL server on loopback: a cluster in a temporary directory, started for the
test session and stopped after it, from Debian's `postgresql` binaries (`make test` installs
them where it can) or else pip's `pgserver` (in the dev extra)."""

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import psycopg2

USER = "ecom"
PASSWORD = "ecom-test-password"


def binaries() -> Path | None:
    """The directory of `initdb` and `pg_ctl` this machine can run, None if there is none.
    As root the server runs as Debian's `postgres` user (PostgreSQL refuses root)."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    try:
        import pgserver
    except ImportError:
        return None
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
    can_run = os.geteuid() != 0 or _has_user("postgres")
    return bundled if (bundled / "pg_ctl").exists() and can_run else None


MISSING = (
    "no PostgreSQL server binaries this user can run: install Debian's postgresql (`make "
    "system-packages` as root) or pip's pgserver (`pip install -e '.[dev]'`, not as root)"
)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class PostgresServer:
    port: int
    directory: Path

    def dsn(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.execute("postgres", f"create database {name}")
        return name

    def execute(self, database: str, sql: str, *params: object) -> list[tuple]:
        """Run one statement in autocommit mode; its rows, if it returns any."""
        connection = psycopg2.connect(self.dsn(database))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params or None)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()


def _as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package creates the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start(directory: Path, port: int) -> PostgresServer:
    """initdb and start a cluster in `directory` listening on 127.0.0.1:`port` (password
    authentication)."""
    server_bin = _binaries_or_raise()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        # The server user must reach its directory through pytest's private temp directories
        # (search permission only, and only below the system's temp directory).
        temp_root = Path(tempfile.gettempdir()).resolve()
        for parent in [directory, *directory.parents]:
            if parent == temp_root or temp_root not in parent.parents:
                break
            parent.chmod(parent.stat().st_mode | 0o001)
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    password_file = directory / "password"
    password_file.write_text(PASSWORD)
    data, sockets = directory / "data", directory
    subprocess.run(
        _as_server_user([
            str(server_bin / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
            f"--pwfile={password_file}", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        ]),
        check=True, capture_output=True,
    )
    # Durability off: a test cluster trades it for speed; it is deleted afterwards.
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        _as_server_user([
            str(server_bin / "pg_ctl"), "-D", str(data), "-o", options,
            "-l", str(directory / "server.log"), "-w", "start",
        ]),
        check=True, capture_output=True,
    )
    return PostgresServer(port, directory)


def stop(server: PostgresServer) -> None:
    subprocess.run(
        _as_server_user([
            str(_binaries_or_raise() / "pg_ctl"), "-D", str(server.directory / "data"), "-m",
            "fast",
            "-w", "stop",
        ]),
        check=False, capture_output=True,
    )
    shutil.rmtree(server.directory, ignore_errors=True)


def _binaries_or_raise() -> Path:
    found = binaries()
    if found is None:
        raise RuntimeError(MISSING)
    return found
