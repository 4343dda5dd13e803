"""The ``faceledger`` command line."""

from __future__ import annotations

from pathlib import Path

import click

from . import __version__

DEFAULT_PORT = 8373


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceledger")
def main() -> None:
    """Self-hosted, Rekognition-compatible face recognition."""


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--data", "data_dir", default="./data", show_default=True, type=click.Path(path_type=Path),
              help="Data folder (the embedded SQLite store).")
@click.option("--buckets", "buckets_dir", default=None, type=click.Path(path_type=Path),
              help="Folder whose subfolders serve as S3 buckets for S3Object image inputs.")
@click.option("--upsample", default=None, type=int, help="HOG detector upsampling (default: measured default).")
@click.option("--log-level", default="info", show_default=True)
def serve(host: str, port: int, data_dir: Path, buckets_dir: Path | None, upsample: int | None, log_level: str) -> None:
    """Serve the Rekognition API over HTTP."""
    import uvicorn

    from .api import create_app
    from .service import Service, ServiceConfig

    data_dir.mkdir(parents=True, exist_ok=True)
    service = Service(ServiceConfig(data_dir=data_dir, buckets_dir=buckets_dir, detector_upsample=upsample))
    if not _is_loopback(host):
        click.echo(f"warning: listening on {host}, reachable from other machines", err=True)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    click.echo(
        f"faceledger {__version__} serving Rekognition on {url} (data: {data_dir.resolve()})\n"
        f"  boto3:   boto3.client('rekognition', endpoint_url='{url}', region_name='us-east-1',\n"
        f"                        aws_access_key_id='local', aws_secret_access_key='local')\n"
        f"  AWS CLI: AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws rekognition list-collections "
        f"--endpoint-url {url} --region us-east-1"
    )
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level)
