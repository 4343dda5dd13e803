"""``faceledger migrate``: move a whole store (every table, the ledger included) from a data folder into
PostgreSQL (docs/distributed.md)."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from .common import CliError
from .main import main

#: The tables moved, in an order that satisfies their foreign keys. Derived state is not moved: face tombstones
#: (the target's indexes are built from its faces) and the health probe.
TABLES = (
    "collections", "faces", "users", "tags", "collection_policies", "access_keys", "request_tokens", "ledger",
    "stream_sources", "stream_sinks", "stream_processors", "video_jobs", "video_job_items", "video_job_results",
)
CHUNK = 2000


@main.command("migrate")
@click.option("--from", "source", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Data folder whose faceledger.db is moved (it may be served meanwhile: one snapshot is read).")
@click.option("--to", "target", required=True, metavar="postgresql://...",
              help="An empty PostgreSQL database (its tables are created).")
def migrate(source: Path, target: str) -> None:
    """Copy every record of DATA/faceledger.db into an empty PostgreSQL database, in one transaction.

    Rows are copied unchanged (the ledger's hash chain too: `faceledger audit verify` passes on the target; sealed
    embeddings stay sealed, serve with the same FACELEDGER_EMBEDDING_KEY); a `Migrate` entry recording the move
    is appended to the target's ledger. Nothing is written to the target unless all of it is; the source is
    only read. Then serve with `--database URL`.
    """
    from ..store.errors import StorageError
    from ..store.ledger import COLUMNS as LEDGER_COLUMNS
    from ..store.ledger import LedgerEntry, verify
    from ..store.postgres import PostgresStore, is_postgres_url, redact
    from ..service.context import os_user

    if not is_postgres_url(target):
        raise CliError(f"--to must be a postgresql:// URL, not {target.split(':')[0]!r}")
    db_file = source / "faceledger.db"
    if not db_file.exists():
        raise CliError(f"no faceledger data in {source} (no faceledger.db)")
    if not db_file.is_file():  # a folder, or a link to /dev/zero: SQLite would read the latter as an empty database
        raise CliError(f"no faceledger data in {source} ({db_file} is not a regular file)")
    started = time.monotonic()
    src = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, isolation_level=None)
    try:
        try:
            src.execute("BEGIN")  # one snapshot, whatever a running server writes meanwhile
            tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise CliError(f"{db_file} is not a faceledger database ({exc}); nothing was moved") from None
        if "collections" not in tables:
            # an empty or foreign database would "move" nothing, and the Migrate entry written to the target
            # would make it refuse the right --from afterwards (it would hold faceledger data)
            raise CliError(f"no faceledger data in {source} ({db_file} has no faceledger tables); nothing was moved")
        checked = None
        if "ledger" in tables:
            rows = src.execute(f"SELECT {', '.join(LEDGER_COLUMNS)}, hash FROM ledger ORDER BY seq")
            names = [d[0] for d in rows.description]
            checked = verify(dict(zip(names, row)) for row in rows)
        if checked is not None and not checked.ok:
            raise CliError(f"the source's ledger is broken ({checked.problem}): run `faceledger audit verify "
                           f"--data {source}`; nothing was moved")
        try:
            store = PostgresStore(target)
        except StorageError as exc:
            raise CliError(f"cannot open {redact(target)}: {exc}") from None
        try:
            counts = _copy(src, store, tables, source)
            entry = LedgerEntry(time=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                                principal=f"local:{os_user()}", source=None, transport="cli", operation="Migrate",
                                collection_id=None, purpose=None, case_ref=None, result="OK",
                                detail={"From": str(source.resolve()), "Rows": counts})
            with store.unit_of_work() as unit:
                unit.commit(entry)
            result = store.verify_ledger()
        finally:
            store.close()
    finally:
        src.close()
    if not result.ok:  # cannot happen unless the target was written meanwhile: say so
        raise CliError(f"the target's ledger does not verify after the move: {result.problem}")
    moved = ", ".join(f"{n} {t}" for t, n in counts.items() if n)
    click.echo(f"moved {source} to {redact(target)} in {time.monotonic() - started:.1f} s: {moved or 'nothing'}")
    click.echo(f"ledger intact on the target: {result.entries} entries (the last records the move); "
               f"head #{result.head_seq} {result.head_hash}")


def _copy(src: sqlite3.Connection, store, tables: set[str], source: Path) -> dict[str, int]:
    """Copy every table in one PostgreSQL transaction (the store's write lock held); rows per table."""
    counts: dict[str, int] = {}
    collection_columns: set[str] = set()
    with store._write() as db:
        for table in ("collections", "ledger", "access_keys", "video_jobs", "stream_processors"):
            if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise CliError(f"the target database already holds faceledger data ({table} is not empty): "
                               "migrate into an empty database")
        for table in TABLES:
            if table not in tables:
                counts[table] = 0
                continue
            target_columns = {r[0] for r in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND "
                "table_schema = current_schema()", (table,))}
            columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})") if r[1] in target_columns]
            if not columns:
                raise CliError(f"table {table} of {source} has no column the target knows")
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            cursor = src.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
            n = 0
            while rows := cursor.fetchmany(CHUNK):
                _refuse_nul(table, columns, rows, n)
                db.executemany(insert, rows)
                n += len(rows)
            counts[table] = n
            click.echo(f"  {table}: {n} rows", err=True)
            if table == "collections":
                collection_columns = target_columns
        if "face_count" in collection_columns:  # a counter kept by triggers: the copied faces counted it again
            db.execute("UPDATE collections SET face_count = (SELECT COUNT(*) FROM faces "
                       "WHERE faces.collection_id = collections.collection_id)")
    return counts


def _refuse_nul(table: str, columns: list[str], rows: list, before: int) -> None:
    """CliError naming the first NUL character in ``rows``: PostgreSQL's text cannot hold one (SQLite's can; a
    ledger entry written before its columns escaped control characters may, and its hash covers it)."""
    for i, row in enumerate(rows):
        for column, value in zip(columns, row):
            if isinstance(value, str) and "\0" in value:
                raise CliError(f"row {before + i + 1} of table {table} has a NUL character in {column}, which "
                               "PostgreSQL text cannot hold (a ledger entry of a refused call, recorded before "
                               "faceledger escaped control characters in ledger columns); nothing was written. "
                               "The entry cannot be changed without breaking the ledger's hash chain: keep this "
                               "store on SQLite")

