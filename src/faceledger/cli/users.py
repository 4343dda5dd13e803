"""``faceledger users``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import (
    App,
    CliError,
    _reasons,
    client_command,
    fmt_pct,
    image_path,
    read_image,
)
from .main import main


@main.group()
def users() -> None:
    """Users: faces of one person grouped under a UserId."""


@client_command(users, "create")
@click.argument("collection_id")
@click.argument("user_id")
def users_create(app: App, collection_id: str, user_id: str) -> None:
    """Create USER_ID in COLLECTION_ID."""
    r = app.call("create_user", CollectionId=collection_id, UserId=user_id)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"created user {user_id} in {collection_id}")


@client_command(users, "delete")
@click.argument("collection_id")
@click.argument("user_id")
def users_delete(app: App, collection_id: str, user_id: str) -> None:
    """Delete USER_ID (its faces stay in the collection, unassociated)."""
    r = app.call("delete_user", CollectionId=collection_id, UserId=user_id)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"deleted user {user_id} from {collection_id}")


@client_command(users, "list")
@click.argument("collection_id")
def users_list(app: App, collection_id: str) -> None:
    """List the users of COLLECTION_ID."""
    r = app.pages("list_users", ("Users",), CollectionId=collection_id)
    if app.as_json:
        return app.print_json(r)
    found = r.get("Users", [])
    if not found:
        app.out.print(f"no users in {collection_id}")
        return
    table = app.table("UserId", "UserStatus")
    for user in found:
        table.add_row(user.get("UserId", ""), user.get("UserStatus", ""))
    app.out.print(table)


def _face_batches(face_ids: tuple[str, ...]) -> list[list[str]]:
    ids = list(face_ids)
    return [ids[i:i + 100] for i in range(0, len(ids), 100)]


@client_command(users, "associate")
@click.argument("collection_id")
@click.argument("user_id")
@click.argument("face_ids", nargs=-1, required=True)
@click.option("--threshold", type=click.FloatRange(0, 100), default=None,
              help="UserMatchThreshold: a face must match the user's faces this well (service default: 75).")
def users_associate(app: App, collection_id: str, user_id: str, face_ids: tuple[str, ...],
                    threshold: float | None) -> None:
    """Associate faces with USER_ID."""
    params: dict[str, Any] = {"CollectionId": collection_id, "UserId": user_id}
    if threshold is not None:
        params["UserMatchThreshold"] = threshold
    done: list[dict[str, Any]] = []
    unsuccessful: list[dict[str, Any]] = []
    status = None
    for batch in _face_batches(face_ids):
        r = app.call("associate_faces", FaceIds=batch, **params)
        done += r.get("AssociatedFaces", [])
        unsuccessful += r.get("UnsuccessfulFaceAssociations", [])
        status = r.get("UserStatus", status)
    _print_association(app, "associated", done, unsuccessful, status, user_id,
                       ("AssociatedFaces", "UnsuccessfulFaceAssociations"))
    if unsuccessful:
        raise CliError(f"{len(unsuccessful)} of {len(face_ids)} faces not associated", 1)


@client_command(users, "disassociate")
@click.argument("collection_id")
@click.argument("user_id")
@click.argument("face_ids", nargs=-1, required=True)
def users_disassociate(app: App, collection_id: str, user_id: str, face_ids: tuple[str, ...]) -> None:
    """Disassociate faces from USER_ID."""
    done: list[dict[str, Any]] = []
    unsuccessful: list[dict[str, Any]] = []
    status = None
    for batch in _face_batches(face_ids):
        r = app.call("disassociate_faces", CollectionId=collection_id, UserId=user_id, FaceIds=batch)
        done += r.get("DisassociatedFaces", [])
        unsuccessful += r.get("UnsuccessfulFaceDisassociations", [])
        status = r.get("UserStatus", status)
    _print_association(app, "disassociated", done, unsuccessful, status, user_id,
                       ("DisassociatedFaces", "UnsuccessfulFaceDisassociations"))
    if unsuccessful:
        raise CliError(f"{len(unsuccessful)} of {len(face_ids)} faces not disassociated", 1)


def _print_association(app: App, verb: str, done: list[dict[str, Any]], unsuccessful: list[dict[str, Any]],
                       status: str | None, user_id: str, keys: tuple[str, str]) -> None:
    if app.as_json:
        app.print_json({keys[0]: done, keys[1]: unsuccessful, "UserStatus": status})
        return
    for entry in done:
        app.out.print(f"{verb} {entry.get('FaceId')}")
    for entry in unsuccessful:
        extra = []
        if entry.get("UserId") and entry["UserId"] != user_id:
            extra.append(f"user {entry['UserId']}")
        if entry.get("Confidence") is not None:
            extra.append(f"similarity {entry['Confidence']:.2f}")
        suffix = f" ({', '.join(extra)})" if extra else ""
        app.out.print(f"not {verb} {entry.get('FaceId')}: {_reasons(entry)}{suffix}", markup=False)
    app.out.print(f"user {user_id}: {status}")


@client_command(users, "search")
@click.argument("collection_id")
@click.option("--user-id", default=None, help="Search with this user's faces (SearchUsers).")
@click.option("--face-id", default=None, help="Search with this face (SearchUsers).")
@click.option("--image", type=image_path, default=None, help="Search with the largest face of this image "
              "(SearchUsersByImage).")
@click.option("--threshold", type=click.FloatRange(0, 100), default=80.0, show_default=True,
              help="UserMatchThreshold: lowest Similarity to report.")
@click.option("--max-users", type=click.IntRange(1, 500), default=None, help="Report at most N users.")
def users_search(app: App, collection_id: str, user_id: str | None, face_id: str | None, image: Path | None,
                 threshold: float, max_users: int | None) -> None:
    """Find the users of COLLECTION_ID who match a user, a face or an image."""
    if sum(x is not None for x in (user_id, face_id, image)) != 1:
        raise click.UsageError("give exactly one of --user-id, --face-id or --image")
    params: dict[str, Any] = {"CollectionId": collection_id, "UserMatchThreshold": threshold}
    if max_users is not None:
        params["MaxUsers"] = max_users
    if image is not None:
        r = app.call("search_users_by_image", Image=read_image(image), **params)
    elif user_id is not None:
        r = app.call("search_users", UserId=user_id, **params)
    else:
        r = app.call("search_users", FaceId=face_id, **params)
    if app.as_json:
        return app.print_json(r)
    app.print_search_risk()
    matches = r.get("UserMatches", [])
    if not matches:
        app.out.print(f"no match in {collection_id} at threshold {threshold:g}")
        return
    table = app.table("UserId", "Similarity")
    for m in matches:
        table.add_row(m.get("User", {}).get("UserId", ""), fmt_pct(m.get("Similarity")))
    app.out.print(table)


# ---- keys, audit: on the data folder ------------------------------------------------------------

