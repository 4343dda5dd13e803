"""``faceledger collections``."""

from __future__ import annotations

from datetime import datetime

import click

from .common import (
    App,
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


# ---- index ----------------------------------------------------------------------------------------


