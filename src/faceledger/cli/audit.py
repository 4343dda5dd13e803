"""``faceledger audit``: verify, list and export the ledger."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import click

from .common import (
    _DATA_OPTION,
    CliError,
    _local_service,
)
from .main import main


@main.group()
def audit() -> None:
    """The ledger: verify its hash chain, list and export its entries."""


@audit.command("verify")
@_DATA_OPTION
def audit_verify(data_dir: Path) -> None:
    """Check the whole hash chain; exit 1 naming the first entry altered, removed or reordered."""
    service = _local_service(data_dir)
    try:
        result = service.verify_ledger()
    finally:
        service.close()
    if not result.ok:
        click.echo(f"ledger BROKEN: {result.problem} ({result.entries} entries before it are intact)")
        raise CliError(f"ledger verification failed at entry #{result.bad_seq}", 1)
    click.echo(f"ledger intact: {result.entries} entries; head #{result.head_seq} {result.head_hash}")


def _audit_filters(fn: Callable) -> Callable:
    options = [
        _DATA_OPTION,
        click.option("--key", "principal", default=None, help="Access key id (or local:<user>) that acted."),
        click.option("--collection", "collection_id", default=None),
        click.option("--face-id", default=None),
        click.option("--external-image-id", default=None),
        click.option("--operation", default=None, help="e.g. SearchFacesByImage"),
        click.option("--since", default=None, help="ISO 8601 time (UTC), e.g. 2024-05-01 or 2024-05-01T12:00"),
        click.option("--until", default=None, help="ISO 8601 time (UTC)"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _iso(value: str | None, end: bool = False) -> str | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        from datetime import timezone

        when = when.replace(tzinfo=timezone.utc)
    if end and len(value) <= 10:  # a date: the whole day
        from datetime import timedelta

        when = when + timedelta(days=1) - timedelta(microseconds=1)
    return when.isoformat(timespec="microseconds")


def _ledger_entries(data_dir: Path, **f: Any):
    service = _local_service(data_dir)
    try:
        yield from service.ledger(principal=f["principal"], collection_id=f["collection_id"],
                                  operation=f["operation"], since=_iso(f["since"]), until=_iso(f["until"], True),
                                  face_id=f["face_id"], external_image_id=f["external_image_id"])
    finally:
        service.close()


@audit.command("list")
@_audit_filters
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, as audit export.")
def audit_list(as_json: bool, data_dir: Path, **filters: Any) -> None:
    """List ledger entries, filtered."""
    for row in _ledger_entries(data_dir, **filters):
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False, sort_keys=True))
            continue
        faces = row["detail"].get("Faces", [])
        extra = f"  faces={len(faces)}" if faces else ""
        why = f"  purpose={row['purpose']!r} case={row['case_ref']!r}" if row["purpose"] or row["case_ref"] else ""
        click.echo(f"#{row['seq']} {row['time'][:23]} {row['principal']} {row['operation']} "
                   f"{row['collection_id'] or '-'} {row['result']}{extra}{why}")


@audit.command("export")
@_audit_filters
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
def audit_export(output: Path | None, data_dir: Path, **filters: Any) -> None:
    """Export ledger entries as JSON Lines (every stored column, hashes included)."""
    out = open(output, "w", encoding="utf-8") if output else None
    try:
        n = 0
        for row in _ledger_entries(data_dir, **filters):
            line = json.dumps(row, ensure_ascii=False, sort_keys=True)
            if out:
                out.write(line + "\n")
            else:
                click.echo(line)
            n += 1
    finally:
        if out:
            out.close()
    if output:
        click.echo(f"exported {n} entries to {output}", err=True)


# ---- collection policies, erasure, retention (local or --endpoint) --------------------------------


