"""``faceledger policy``, ``erase`` and ``retention``."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import (
    App,
    CliError,
    client_command,
)
from .main import main


@main.group()
def policy() -> None:
    """Per-collection policies: threshold floor, largest MaxFaces, purpose required, retention."""


@client_command(policy, "set")
@click.argument("collection_id")
@click.option("--min-threshold", type=click.FloatRange(0, 100), default=None,
              help="Floor for FaceMatchThreshold/UserMatchThreshold of 1:N searches.")
@click.option("--below-minimum", type=click.Choice(["REFUSE", "RAISE"]), default=None,
              help="A request below the floor: refused (default) or raised to it.")
@click.option("--max-faces", type=click.IntRange(min=1), default=None, help="Largest MaxFaces (MaxUsers).")
@click.option("--require-purpose/--no-require-purpose", default=None,
              help="1:N searches need a purpose and a case reference.")
@click.option("--retention-days", type=click.IntRange(min=1), default=None,
              help="Faces older than this are deleted by the retention sweep.")
@click.option("--allow-live-search/--no-allow-live-search", default=None,
              help="Stream processors may search this collection live (default: refused).")
def policy_set(app: App, collection_id: str, min_threshold: float | None, below_minimum: str | None,
               max_faces: int | None, require_purpose: bool | None, retention_days: int | None,
               allow_live_search: bool | None) -> None:
    """Set COLLECTION_ID's policy (replaces the previous one; recorded in the ledger)."""
    doc: dict[str, Any] = {}
    for key, value in (("MinFaceMatchThreshold", min_threshold), ("BelowMinimum", below_minimum),
                       ("MaxFaces", max_faces), ("RequirePurpose", require_purpose),
                       ("RetentionDays", retention_days), ("AllowLiveSearch", allow_live_search)):
        if value is not None:
            doc[key] = value
    r = app.extension("PutCollectionPolicy", CollectionId=collection_id, Policy=doc)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"policy of {collection_id}: {json.dumps(r.get('Policy', {}), sort_keys=True)}", markup=False)


@client_command(policy, "show")
@click.argument("collection_id")
def policy_show(app: App, collection_id: str) -> None:
    """Show COLLECTION_ID's policy."""
    r = app.extension("GetCollectionPolicy", CollectionId=collection_id)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"policy of {collection_id}: {json.dumps(r.get('Policy', {}), sort_keys=True)}", markup=False)


@client_command(policy, "delete")
@click.argument("collection_id")
def policy_delete(app: App, collection_id: str) -> None:
    """Remove COLLECTION_ID's policy."""
    r = app.extension("DeleteCollectionPolicy", CollectionId=collection_id)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"policy of {collection_id} removed")


@client_command(main, "erase")
@click.option("--external-image-id", required=True, help="Erase every face with this ExternalImageId.")
@click.option("--yes", "-y", is_flag=True, help="Erase without asking (needed when stdin is not a terminal).")
@click.option("--dry-run", is_flag=True, help="Show what would be erased, erase nothing.")
def erase(app: App, external_image_id: str, yes: bool, dry_run: bool) -> None:
    """Erase every face of an ExternalImageId in every collection, overwriting it on disk; prints a receipt.

    First shows the faces and collections it will erase and asks for confirmation (--yes: do not ask;
    without a terminal, --yes is required). Only the faces shown are erased.
    """
    preview = app.extension("EraseFaces", ExternalImageId=external_image_id, DryRun=True)
    faces = preview.get("Faces", [])
    if dry_run and app.as_json:
        return app.print_json(preview)
    show = app.err if app.as_json else app.out  # --json: stdout carries the receipt only
    _print_erasure_preview(app, show, external_image_id, faces, dry_run)
    if dry_run:
        return
    if faces and not yes:
        import sys

        if not sys.stdin.isatty():
            raise CliError(f"erase asks before erasing {len(faces)} face{'s' if len(faces) != 1 else ''} and "
                           "stdin is not a terminal: run it again with --yes to erase them (--dry-run only shows "
                           "them)")
        if not click.confirm(f"Erase {'this face' if len(faces) == 1 else f'these {len(faces)} faces'}? "
                             "This cannot be undone", default=False, err=True):
            raise CliError("nothing erased", 1)
    r = app.extension("EraseFaces", ExternalImageId=external_image_id, FaceIds=[f["FaceId"] for f in faces])
    if app.as_json:
        return app.print_json(r)
    erased = r.get("ErasedFaces", [])
    app.out.print(f"erased {len(erased)} face{'s' if len(erased) != 1 else ''} of {external_image_id} "
                  f"(receipt {r.get('ErasureId')})", markup=False)
    for face in erased:
        app.out.print(f"  {face['CollectionId']} {face['FaceId']}", markup=False)
    if len(erased) < len(faces):
        app.out.print(f"  {len(faces) - len(erased)} of the faces shown were deleted meanwhile", markup=False)


def _print_erasure_preview(app: App, out, external_image_id: str, faces: list[dict[str, Any]],
                           dry_run: bool) -> None:
    """The faces (and collections) an erasure touches, with the file an escaped id names."""
    from ..external_ids import describe

    named = describe(external_image_id)
    what = external_image_id + (f" (file {named})" if named != external_image_id else "")
    if not faces:
        out.print(f"no face has ExternalImageId {what}", markup=False)
        return
    collections = sorted({f["CollectionId"] for f in faces})
    verb = "would erase" if dry_run else "will erase"
    out.print(f"{verb} {len(faces)} face{'s' if len(faces) != 1 else ''} of ExternalImageId {what} in "
              f"{len(collections)} collection{'s' if len(collections) != 1 else ''} "
              f"({', '.join(collections)}):", markup=False)
    with_users = any(f.get("UserId") for f in faces)
    table = app.table("CollectionId", "FaceId", "ImageId", *(["UserId"] if with_users else []))
    for f in faces:
        table.add_row(f["CollectionId"], f["FaceId"], f.get("ImageId", ""),
                      *([f.get("UserId", "")] if with_users else []))
    out.print(table)


@main.group()
def retention() -> None:
    """Retention: delete the faces older than their collection's RetentionDays."""


@client_command(retention, "sweep")
@click.option("--collection", "collection_id", default=None, help="Only this collection.")
def retention_sweep(app: App, collection_id: str | None) -> None:
    """Run the retention sweep now (the server runs it every --retention-interval seconds)."""
    params = {"CollectionId": collection_id} if collection_id else {}
    r = app.extension("ApplyRetention", **params)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"retention sweep: {len(r.get('DeletedFaces', []))} faces deleted")


