"""``faceledger collections``."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click

from .common import (
    _DATA_OPTION,
    App,
    CliError,
    _local_service,
    client_command,
)
from .main import main


@main.group()
def collections() -> None:
    """Create, list, describe and delete collections."""


@client_command(collections, "create")
@click.argument("collection_id")
def collections_create(app: App, collection_id: str) -> None:
    """Create the collection COLLECTION_ID."""
    r = app.call("create_collection", CollectionId=collection_id)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"created collection {collection_id} ({r['CollectionArn']}, model {r['FaceModelVersion']})")


@client_command(collections, "list")
def collections_list(app: App) -> None:
    """List all collections."""
    r = app.pages("list_collections", ("CollectionIds", "FaceModelVersions"))
    if app.as_json:
        return app.print_json(r)
    ids = r.get("CollectionIds", [])
    if not ids:
        app.out.print("no collections")
        return
    table = app.table("CollectionId", "FaceModelVersion")
    for cid, version in zip(ids, r.get("FaceModelVersions", [""] * len(ids))):
        table.add_row(cid, version)
    app.out.print(table)


@client_command(collections, "describe")
@click.argument("collection_id")
def collections_describe(app: App, collection_id: str) -> None:
    """Show a collection's ARN, model, face and user counts."""
    r = app.call("describe_collection", CollectionId=collection_id)
    if app.as_json:
        return app.print_json(r)
    created = r.get("CreationTimestamp")
    rows = [
        ("CollectionId", collection_id),
        ("CollectionARN", r.get("CollectionARN", "")),
        ("FaceModelVersion", r.get("FaceModelVersion", "")),
        ("FaceCount", str(r.get("FaceCount", ""))),
        ("UserCount", str(r.get("UserCount", ""))),
        ("CreationTimestamp", created.isoformat() if isinstance(created, datetime) else str(created or "")),
    ]
    for key, value in rows:
        app.out.print(f"{key + ':':<19}{value}")


@client_command(collections, "delete")
@click.argument("collection_id")
def collections_delete(app: App, collection_id: str) -> None:
    """Delete a collection and every face in it."""
    r = app.call("delete_collection", CollectionId=collection_id)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"deleted collection {collection_id}")


@client_command(collections, "export")
@click.argument("collection_id")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def collections_export(app: App, collection_id: str, directory: Path) -> None:
    """Write COLLECTION_ID to DIRECTORY (new or empty): collection.json, faces.jsonl, vectors.npy.

    The export holds biometric data (every face's vector): keep it as you keep the data folder. It is
    recorded in the ledger and needs the faceledger:ExportCollection permission. Local data folder only.
    """
    r = _transfer(app, "ExportCollection", CollectionId=collection_id, Directory=str(directory))
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"exported {r['FaceCount']} faces of {collection_id} ({r['Dimension']}-d vectors) to {directory}"
                  " (biometric data: keep it private)", markup=False)


@client_command(collections, "import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--collection-id", default=None, help="Import under this id (default: the export's).")
def collections_import(app: App, directory: Path, collection_id: str | None) -> None:
    """Create a collection from an export in DIRECTORY (all or nothing). Local data folder only."""
    params = {"Directory": str(directory)}
    if collection_id is not None:
        params["CollectionId"] = collection_id
    r = _transfer(app, "ImportCollection", **params)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"imported {r['FaceCount']} faces into {r['CollectionId']} (model {r['FaceModelVersion']})",
                  markup=False)


def _transfer(app: App, operation: str, **params):
    if app.endpoint:
        raise CliError(f"collections {operation[:6].lower()} works on the local data folder (--data), "
                       "not through --endpoint")
    from ..service.transfer import PROGRESS

    start = time.monotonic()
    last = [0.0]

    def report(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2 or done == total:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            app.err.print(f"{phase}: {done}/{total} faces ({rate:,.0f}/s)", markup=False)

    token = PROGRESS.set(report)
    try:
        return app.extension(operation, **params)
    finally:
        PROGRESS.reset(token)


@collections.command("reindex")
@_DATA_OPTION
@click.argument("collection_id")
def collections_reindex(data_dir: Path, collection_id: str) -> None:
    """Rebuild COLLECTION_ID's saved vector index from the stored vectors (derived state; docs/scale.md).

    A server running on the data folder keeps its own copy in memory until it restarts."""
    service = _local_service(data_dir)
    start = time.monotonic()
    try:
        done = service.store.rebuild_index(collection_id)
    finally:
        service.store.close()
    if done is None:
        raise CliError(f"no collection {collection_id} in {data_dir}")
    click.echo(f"rebuilt the {done['kind']} index of {collection_id}: {done['faces']} faces in "
               f"{time.monotonic() - start:.1f} s")


