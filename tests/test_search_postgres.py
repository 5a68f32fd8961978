"""Two workers on one study in a real PostgreSQL server, the way a cluster shares a study.

The test starts its own server: Debian's ``postgresql`` package (``initdb``, ``pg_ctl``), a throw-away data
folder, trust authentication on 127.0.0.1 only, a free port, stopped when the test ends. ``initdb`` refuses
to run as root, so under root the server runs as the ``postgres`` user (``runuser -u postgres``). Where the
binaries are missing the test fails and says what to install: a storage backend that is never exercised is
a storage backend that does not work.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from search_helpers import assert_no_trial_lost_or_duplicated, load_study, trial_numbers_in, two_workers

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found. Install Debian's postgresql package: "
    "`apt-get update && apt-get install -y postgresql` (CI: .ci/run does this when they are absent)."
)


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    root = os.geteuid() == 0
    if root:
        try:
            import pwd

            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(
                "running as root but there is no 'postgres' user to run the server as; " + INSTALL_HINT,
                pytrace=False,
            )
    as_server = ["runuser", "-u", "postgres", "--"] if root else []
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="freezelab-pg-"))
    if root:
        os.chown(base, account.pw_uid, account.pw_gid)
    data, port = base / "data", free_port()

    def run(*args: str) -> None:
        proc = subprocess.run([*as_server, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed:\n{proc.stdout}\n{proc.stderr}\n{log}", pytrace=False)

    run(initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c max_connections=50 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-o", options, "-w", "start")
    try:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE freezelab")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/freezelab"
    finally:
        subprocess.run(
            [*as_server, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_one_postgres_study(tmp_path, postgres_url):
    logs = two_workers(
        tmp_path, f"search.storage={postgres_url}", "search.study_name=pg_two_workers", n_trials=6
    )
    trials = assert_no_trial_lost_or_duplicated(postgres_url, "pg_two_workers", 6, 2)
    ran = [trial_numbers_in(log) for log in logs]
    assert ran[0] and ran[1], "both workers ran trials"
    assert not ran[0] & ran[1] and ran[0] | ran[1] == {t.number for t in trials}
    assert not (tmp_path / "search" / "pg_two_workers" / "study.db").exists()  # the study lives in PostgreSQL
    assert (tmp_path / "search" / "pg_two_workers" / "best.yaml").is_file()
    assert load_study(postgres_url, "pg_two_workers").best_value is not None
