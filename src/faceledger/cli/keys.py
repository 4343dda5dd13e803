"""``faceledger keys``: access keys and their policies, on the local data folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import (
    _DATA_OPTION,
    CliError,
    _local_service,
)
from .main import main


@main.group()
def keys() -> None:
    """Access keys: the SigV4 credentials a server accepts, each with a policy."""


@keys.command("create")
@_DATA_OPTION
@click.option("--name", required=True, help="Who or what the key is for (shown in keys list).")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="IAM-subset policy JSON file (default: everything allowed).")
@click.option("--json", "as_json", is_flag=True, help='Print {"AccessKeyId": .., "SecretAccessKey": ..}.')
def keys_create(data_dir: Path, name: str, policy_file: Path | None, as_json: bool) -> None:
    """Create a key; its secret is printed once and stored encrypted."""
    from ..service import RequestContext
    from ..service.errors import RekognitionError

    service = _local_service(data_dir, must_exist=False)  # creates the data folder, 0700
    try:
        policy = policy_file.read_text() if policy_file else None
        key_id, secret = service.create_access_key(name, policy, RequestContext(transport="cli"))
    except RekognitionError as exc:
        raise CliError(f"{exc.code}: {exc.message}") from None
    finally:
        service.close()
    if as_json:
        click.echo(json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret}))
    else:
        click.echo(f"created key {key_id} ({name})\n  aws_access_key_id     = {key_id}\n"
                   f"  aws_secret_access_key = {secret}\n(the secret is not shown again)")


@keys.command("list")
@_DATA_OPTION
@click.option("--json", "as_json", is_flag=True)
def keys_list(data_dir: Path, as_json: bool) -> None:
    """List keys (never their secrets)."""
    service = _local_service(data_dir)
    try:
        rows = [{"AccessKeyId": k.access_key_id, "Name": k.name, "CreatedAt": k.created_at.isoformat(),
                 "Status": "Revoked" if k.revoked_at else "Active", "Policy": json.loads(k.policy)}
                for k in service.list_access_keys()]
    finally:
        service.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['AccessKeyId']}  {r['Status']:<8} {r['CreatedAt'][:19]}  {r['Name']}")


@keys.command("revoke")
@_DATA_OPTION
@click.argument("access_key_id")
def keys_revoke(data_dir: Path, access_key_id: str) -> None:
    """Revoke a key: the next request signed with it is refused."""
    service = _local_service(data_dir)
    try:
        if not service.revoke_access_key(access_key_id):
            raise CliError(f"no active key {access_key_id}")
    finally:
        service.close()
    click.echo(f"revoked {access_key_id}")


