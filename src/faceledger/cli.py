"""The ``faceledger`` command line."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import unicodedata
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

import click
from botocore.exceptions import BotoCoreError, ClientError
from click.core import ParameterSource

from . import __version__

DEFAULT_PORT = 8373


class MainGroup(click.Group):
    """The top-level group: turns service and client errors into ``error: ...`` and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            code, message = _error_parts(exc)
            click.echo(f"error: {code}: {message}", err=True)
            ctx.exit(2)
        except CliError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.code)
        except BotoCoreError as exc:  # no connection to --endpoint, a request boto3 refuses to send, ...
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if os.environ.get("FACELEDGER_DEBUG"):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc} (FACELEDGER_DEBUG=1 shows the traceback)", err=True)
            ctx.exit(2)


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceledger")
def main() -> None:
    """Self-hosted, Rekognition-compatible face recognition.

    Every command but serve works on the local data folder (--data, in-process) or on a running
    server (--endpoint URL), and prints tables, or the raw response with --json.
    """


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _false_match_limit(value: str | None) -> float | None:
    import math

    if value is None or str(value).strip().lower() == "none":
        return None
    try:
        limit = float(value)
    except ValueError:
        raise CliError(f"--max-expected-false-matches must be a number >= 0 or 'none', not {value!r}") from None
    if not math.isfinite(limit) or limit < 0:
        raise CliError(f"--max-expected-false-matches must be a number >= 0 or 'none', not {value!r}")
    return limit


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--data", "data_dir", default="./data", show_default=True, type=click.Path(path_type=Path),
              help="Data folder (the embedded SQLite store).")
@click.option("--buckets", "buckets_dir", default=None, type=click.Path(path_type=Path),
              help="Folder whose subfolders serve as S3 buckets for S3Object image inputs.")
@click.option("--upsample", default=None, type=int, help="HOG detector upsampling (default: measured default).")
@click.option("--engine", type=click.Choice(["onnx", "dlib"]), default="onnx", show_default=True,
              help="Embedding runtime: onnx (dlib's network on ONNX Runtime, batched) or dlib (the reference).")
@click.option("--face-model", type=click.Choice(["faceledger-fusion-v1", "dlib-resnet-v1"]), default=None,
              help="Face model of new collections (default: faceledger-fusion-v1; dlib-resnet-v1 with --engine "
                   "dlib). Existing collections keep theirs: see docs/models.md.")
@click.option("--dev", is_flag=True, help="Development mode: no signature checks (refused off loopback).")
@click.option("--retention-interval", default=3600.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between retention sweeps (0: never).")
@click.option("--log-level", default="info", show_default=True)
@click.option("--max-expected-false-matches", "max_efm", default="0.001", show_default=True,
              help="Default limit on the expected false matches per 1:N search: the threshold is raised for the "
                   "collection's size until FMR x faces searched meets it (per request: header "
                   "X-Faceledger-Max-Expected-False-Matches). 'none': no limit (Rekognition's behaviour).")
@click.option("--min-margin", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Margin rule: a 1:N search answers only when its best identity is this many decades of FMR "
                   "less likely to be a chance match than the runner-up, else it is ambiguous and returns no "
                   "match (per request: header X-Faceledger-Min-Margin). 0: off.")
@click.option("--calibration", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Similarity calibration from `faceledger eval calibrate` (default: the packaged table).")
def serve(host: str, port: int, data_dir: Path, buckets_dir: Path | None, upsample: int | None, engine: str,
          face_model: str | None, dev: bool, retention_interval: float, log_level: str, max_efm: str | None = "0.001",
          min_margin: float = 1.0, calibration: Path | None = None) -> None:
    """Serve the Rekognition API over HTTP, every request signed with a faceledger key.

    On first start (no key yet) an admin key is created, printed once and written as the
    `faceledger` profile of DATA/credentials (an AWS shared credentials file).
    """
    import uvicorn

    from .api import create_app
    from .service import Service, ServiceConfig

    if dev and not _is_loopback(host):
        raise CliError(f"--dev (no authentication) is refused on {host}: it is allowed on loopback only")
    limit = _false_match_limit(max_efm)
    data_dir.mkdir(parents=True, exist_ok=True)
    service = Service(ServiceConfig(data_dir=data_dir, buckets_dir=buckets_dir, detector_upsample=upsample,
                                    engine=engine, face_model=face_model, max_expected_false_matches=limit,
                                    min_margin=min_margin,
                                    calibration=calibration))
    if engine == "dlib" and face_model not in (None, "dlib-resnet-v1"):
        raise CliError(f"--face-model {face_model} needs --engine onnx")
    if calibration is not None:
        try:
            service.scale  # load and check it now, not on the first search
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if not _is_loopback(host):
        click.echo(f"warning: listening on {host}, reachable from other machines", err=True)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    click.echo(f"faceledger {__version__} serving Rekognition on {url} (data: {data_dir.resolve()}; "
               f"face model of new collections: {service.model_version})")
    click.echo(f"  Similarity calibration: {service.calibration_source()}"
               + (f"; max expected false matches per search: {limit:g}" if limit is not None
                  else "; no limit on expected false matches (--max-expected-false-matches none)")
               + (f"; margin rule {min_margin:g} decade(s) of FMR" if min_margin > 0 else "; margin rule off"))
    if dev:
        click.echo(
            "  DEVELOPMENT MODE: requests are not authenticated (any signed request is accepted).\n"
            f"  boto3:   boto3.client('rekognition', endpoint_url='{url}', region_name='us-east-1',\n"
            f"                        aws_access_key_id='local', aws_secret_access_key='local')"
        )
    else:
        credentials = data_dir / "credentials"
        admin = service.ensure_admin_key()
        if admin is not None:
            key_id, secret = admin
            _write_credentials(credentials, "faceledger", key_id, secret)
            click.echo(
                "  first start: created the admin key (shown once, also saved as profile 'faceledger' in "
                f"{credentials.resolve()}):\n"
                f"    aws_access_key_id     = {key_id}\n"
                f"    aws_secret_access_key = {secret}"
            )
        creds = credentials.resolve()
        click.echo(
            f"  AWS CLI: AWS_SHARED_CREDENTIALS_FILE={creds} aws --profile faceledger rekognition "
            f"list-collections --endpoint-url {url} --region us-east-1\n"
            f"  boto3:   boto3.Session(profile_name='faceledger')  # with AWS_SHARED_CREDENTIALS_FILE={creds}\n"
            f"           .client('rekognition', endpoint_url='{url}', region_name='us-east-1')\n"
            f"  more keys: faceledger keys create --data {data_dir} --name NAME [--policy FILE]"
        )
    app = create_app(service, authenticate=not dev, retention_interval_s=retention_interval or None)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _write_credentials(path: Path, profile: str, key_id: str, secret: str) -> None:
    """Add (or replace) ``profile`` in an AWS shared credentials file, mode 0600."""
    import configparser

    config = configparser.ConfigParser()
    if path.exists():
        config.read(path)
    config[profile] = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        config.write(f)
    os.chmod(path, 0o600)


# --------------------------------------------------------------------------------------------------
# Client commands: the same Rekognition operations over a local data folder or a running server.
# --------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Errors that concern one image of an `index` run: reported and counted, the run goes on.
PER_IMAGE_ERRORS = {
    "InvalidImageFormatException",
    "ImageTooLargeException",
    "InvalidParameterException",
    "InvalidS3ObjectException",
}
EXTERNAL_ID_MAX = 255
_EXTERNAL_ID_BAD = re.compile(r"[^a-zA-Z0-9_.\-:]")


class CliError(Exception):
    """A failure to report as ``error: ...`` with an exit status (no traceback)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class App:
    """What every client command runs with: where the service is and how to print."""

    def __init__(self, data_dir: Path, buckets_dir: Path | None, endpoint: str | None, region: str | None,
                 as_json: bool, purpose: str | None = None, case: str | None = None) -> None:
        self.data_dir, self.buckets_dir = data_dir, buckets_dir
        self.purpose, self.case = purpose, case
        self.endpoint, self.region, self.as_json = endpoint, region, as_json
        self.stateless = False  # set by commands that need no data folder
        self._client: Any = None
        from rich.console import Console

        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._endpoint_client() if self.endpoint else self._local_client()
        return self._client

    def _local_client(self) -> Any:
        from .client import Client
        from .service import RequestContext, Service, ServiceConfig

        context = RequestContext(transport="cli", purpose=self.purpose, case_reference=self.case)
        if self.stateless:  # detect and compare never touch a collection: leave no ./data behind
            from .store.sqlite import SQLiteStore

            config = ServiceConfig(self.data_dir, self.buckets_dir)
            return Client(service=Service(config, SQLiteStore(":memory:")), context=context)
        return Client(self.data_dir, buckets_dir=self.buckets_dir, context=context)

    def _endpoint_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise CliError("--endpoint needs boto3: pip install boto3") from None
        session = boto3.Session()
        region = self.region or session.region_name or "us-east-1"
        kwargs: dict[str, Any] = {}
        if session.get_credentials() is None:  # nothing configured: faceledger accepts any signed request
            kwargs = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        # No retries: IndexFaces is not idempotent, a retried timeout could index an image twice.
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=600)
        client = session.client("rekognition", endpoint_url=self.endpoint, region_name=region, config=config,
                                **kwargs)
        add_purpose_headers(client, self.purpose, self.case)
        return client

    def extension(self, operation: str, **params: Any) -> dict[str, Any]:
        """One of faceledger's own operations (Faceledger.<Op>), locally or signed to --endpoint."""
        if not self.endpoint:
            from botocore import xform_name

            response = getattr(self.client, xform_name(operation))(**params)
            response.pop("ResponseMetadata", None)
            return response
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.httpsession import URLLib3Session

        client = self.client
        credentials = client._request_signer._credentials  # the same credentials boto3 signs with
        request = AWSRequest(method="POST", url=self.endpoint.rstrip("/") + "/", data=json.dumps(params).encode(),
                             headers={"X-Amz-Target": f"Faceledger.{operation}",
                                      "Content-Type": "application/x-amz-json-1.1"})
        if self.purpose:
            request.headers["X-Faceledger-Purpose"] = self.purpose
        if self.case:
            request.headers["X-Faceledger-Case"] = self.case
        SigV4Auth(credentials.get_frozen_credentials(), "rekognition", client.meta.region_name).add_auth(request)
        response = URLLib3Session(timeout=600).send(request.prepare())
        try:
            body = json.loads(response.content or b"{}")
        except ValueError:
            body = {"message": response.text}
        if response.status_code != 200:
            error = {"Code": body.get("__type", "Unknown").split("#")[-1], "Message": body.get("message", "")}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": response.status_code}},
                              operation)
        return body

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        response = getattr(self.client, method)(**params)
        headers = (response.pop("ResponseMetadata", None) or {}).get("HTTPHeaders") or {}
        self.last_headers = {k.lower(): v for k, v in headers.items()}
        return response

    def print_search_risk(self) -> None:
        """The expected false matches and threshold used of the last 1:N search (x-faceledger-* headers)."""
        h = getattr(self, "last_headers", {})
        if "x-faceledger-expected-false-matches" in h:
            self.out.print(f"threshold used {h.get('x-faceledger-threshold-used', '?')}; expected false matches "
                           f"for this search {float(h['x-faceledger-expected-false-matches']):.3g}", markup=False)
        if h.get("x-faceledger-ambiguous") == "true":
            self.out.print("ambiguous: the best match does not stand out from the runner-up by the margin rule "
                           "(X-Faceledger-Min-Margin); no match is reported", markup=False)

    def pages(self, method: str, list_keys: tuple[str, ...], **params: Any) -> dict[str, Any]:
        """Call a List operation until NextToken runs out; the pages' lists joined."""
        merged: dict[str, Any] = {}
        token, seen = None, set()
        while True:
            response = self.call(method, **params, **({"NextToken": token} if token else {}))
            token = response.pop("NextToken", None)
            if token in seen:
                raise CliError(f"{method}: the service returned the same NextToken twice")
            seen.add(token)
            for key, value in response.items():
                if key in list_keys:
                    merged.setdefault(key, []).extend(value)
                else:
                    merged[key] = value
            if not token:
                return merged

    def print_json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))

    def table(self, *columns: str, title: str | None = None) -> Any:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False)
        for name in columns:
            numeric = name in ("Similarity", "Confidence", "#", "Sharpness", "Brightness", "Roll", "Yaw", "Pitch")
            if name in ("FaceId", "ImageId"):  # a UUID stays whole on one line
                table.add_column(name, no_wrap=True, min_width=36)
            else:
                table.add_column(name, justify="right" if numeric else "left", overflow="fold")
        return table

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()


def add_purpose_headers(client: Any, purpose: str | None, case: str | None) -> None:
    """Send X-Faceledger-Purpose and X-Faceledger-Case with every request of a boto3 client."""
    if not purpose and not case:
        return

    def add(request: Any, **_: Any) -> None:
        if purpose:
            request.headers["X-Faceledger-Purpose"] = purpose
        if case:
            request.headers["X-Faceledger-Case"] = case

    client.meta.events.register("before-sign.rekognition.*", add)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def client_command(group: click.Group, name: str | None = None, **settings: Any) -> Callable:
    """A subcommand of ``group`` taking the client options; the function gets an :class:`App` first."""

    def decorate(fn: Callable) -> click.Command:
        @functools.wraps(fn)
        def run(data_dir: Path, buckets_dir: Path | None, endpoint: str | None, region: str | None,
                as_json: bool, purpose: str | None, case: str | None, **kwargs: Any) -> None:
            ctx = click.get_current_context()
            if endpoint:
                for param, flag in (("data_dir", "--data"), ("buckets_dir", "--buckets")):
                    if ctx.get_parameter_source(param) is not ParameterSource.DEFAULT:
                        raise click.UsageError(f"{flag} is for the local data folder; with --endpoint the "
                                               "server uses its own")
            app = App(data_dir, buckets_dir, endpoint, region, as_json, purpose, case)
            try:
                fn(app, **kwargs)
            finally:
                app.close()

        own = list(getattr(run, "__click_params__", []))
        run.__click_params__ = []  # type: ignore[attr-defined]
        for option in reversed(_CLIENT_OPTIONS):
            run = option(run)
        run.__click_params__ += own  # type: ignore[attr-defined]  (the command's own options first in --help)
        return group.command(name, **settings)(run)

    return decorate


_CLIENT_OPTIONS = [
    click.option("--data", "data_dir", default="./data", show_default=True, type=click.Path(path_type=Path),
                 help="Local data folder (used in-process, no server needed)."),
    click.option("--buckets", "buckets_dir", default=None, type=click.Path(path_type=Path),
                 help="Local folder whose subfolders serve as S3 buckets."),
    click.option("--endpoint", metavar="URL", default=None,
                 help="Act on a running server (e.g. http://127.0.0.1:8373) instead of the data folder."),
    click.option("--region", default=None, help="Region for --endpoint (default: profile's, else us-east-1)."),
    click.option("--json", "as_json", is_flag=True, help="Print the raw response as JSON."),
    click.option("--purpose", envvar="FACELEDGER_PURPOSE", default=None,
                 help="Why (recorded in the ledger; X-Faceledger-Purpose). Env: FACELEDGER_PURPOSE."),
    click.option("--case", envvar="FACELEDGER_CASE", default=None,
                 help="Case reference (recorded in the ledger; X-Faceledger-Case). Env: FACELEDGER_CASE."),
]

image_path = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


def read_image(path: Path) -> dict[str, bytes]:
    try:
        return {"Bytes": path.read_bytes()}
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def image_size(path: Path) -> tuple[int, int] | None:
    """The upright (EXIF-rotated) size of an image, from its header; None when unreadable."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(0x0112) in (5, 6, 7, 8):
                width, height = height, width
            return width, height
    except Exception:
        return None


def fmt_box(box: dict[str, float] | None, size: tuple[int, int] | None = None) -> str:
    """A BoundingBox in pixels when the image's size is known, else in ratios."""
    if not box:
        return ""
    if size:
        w, h = size
        return (f"x={round(box['Left'] * w)} y={round(box['Top'] * h)} "
                f"{round(box['Width'] * w)}x{round(box['Height'] * h)}")
    return f"left={box['Left']:.3f} top={box['Top']:.3f} w={box['Width']:.3f} h={box['Height']:.3f}"


def fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _reasons(entry: dict[str, Any]) -> str:
    return ", ".join(entry.get("Reasons", []))


# ---- collections ----------------------------------------------------------------------------------


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


def external_image_id(relative: str) -> str:
    """A relative path as an ExternalImageId (``[a-zA-Z0-9_.\\-:]+``, at most 255 characters).

    Path separators become ``:``, whitespace ``_``, accented letters lose their accents and any
    other character becomes ``_``; a longer id keeps its last 255 characters (the file's name).
    """
    text = relative.replace("\\", "/").replace("/", ":")
    text = re.sub(r"\s", "_", text)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = _EXTERNAL_ID_BAD.sub("_", text) or "_"
    return text[-EXTERNAL_ID_MAX:]


def image_files(paths: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(file, relative name) for every image under ``paths``: folders recursively (JPEG and PNG by
    extension, hidden files and folders skipped, sorted), files as given; each file once."""
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(path: Path, relative: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, relative))

    for root in paths:
        if root.is_dir():
            batch = []
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                        path = Path(folder) / name
                        batch.append((path.relative_to(root).as_posix(), path))
            for relative, path in sorted(batch):
                add(path, relative)
        else:
            add(root, root.name)
    return found


def _faces_column() -> Any:
    """A progress column: faces indexed so far and faces per second."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class FacesColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            faces = task.fields.get("faces", 0)
            elapsed = task.elapsed or 0
            rate = faces / elapsed if elapsed > 0 else 0.0
            return Text(f"{faces} faces, {rate:.1f} faces/s")

    return FacesColumn()


@client_command(main, "index")
@click.argument("collection_id")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--max-faces", type=click.IntRange(min=1), default=None, help="Index at most N faces per image.")
@click.option("--quality-filter", type=click.Choice(["NONE", "AUTO", "LOW", "MEDIUM", "HIGH"]), default=None,
              help="Rekognition's QualityFilter (service default: AUTO).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Images indexed at once (default: the CPUs available, or $FACELEDGER_WORKERS).")
def index(app: App, collection_id: str, paths: tuple[Path, ...], max_faces: int | None,
          quality_filter: str | None, progress: bool | None, workers: int | None) -> None:
    """Index the faces of images (files, or folders recursively) into COLLECTION_ID.

    Each image's ExternalImageId is its path relative to the folder given (a file given directly:
    its name), with '/' as ':' and spaces as '_'.
    """
    files = image_files(paths)
    if not files:
        app.err.print("warning: no JPEG or PNG images in " + ", ".join(map(str, paths)), markup=False)
    app.call("describe_collection", CollectionId=collection_id)  # a missing collection fails before any work
    params: dict[str, Any] = {"CollectionId": collection_id}
    if max_faces is not None:
        params["MaxFaces"] = max_faces
    if quality_filter is not None:
        params["QualityFilter"] = quality_filter

    if workers is None:
        from .vision.engine import default_workers

        workers = default_workers()
    results: list[dict[str, Any]] = []
    indexed = 0
    unindexed: Counter[str] = Counter()
    unindexed_faces = 0
    no_face_images = 0
    failed: list[tuple[str, str]] = []
    show = app.err.is_terminal if progress is None else progress

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                   _faces_column(), TimeElapsedColumn(), console=app.err, disable=not show, transient=False)
    fatal: BaseException | None = None

    def index_one(path: Path, ext_id: str) -> dict[str, Any]:
        return app.call("index_faces", **params, Image={"Bytes": path.read_bytes()}, ExternalImageId=ext_id)

    def record(path: Path, entry: dict[str, Any], future: Future) -> bool:
        """Account for one image's outcome; False for an error that must stop the run."""
        nonlocal indexed, unindexed_faces, no_face_images, fatal
        try:
            r = future.result()
        except OSError as exc:
            message = f"cannot read: {exc.strerror or exc}"
            entry["Error"] = {"Code": "FileError", "Message": message}
        except ClientError as exc:
            code, message = _error_parts(exc)
            if code not in PER_IMAGE_ERRORS:
                fatal = fatal or exc
                return False
            entry["Error"] = {"Code": code, "Message": message}
            message = f"{code}: {message}"
        except BotoCoreError as exc:  # the server went away: stop, after the summary so far
            fatal = fatal or exc
            return False
        else:
            entry.update(r)
            indexed += len(r.get("FaceRecords", []))
            for face in r.get("UnindexedFaces", []):
                unindexed_faces += 1
                unindexed.update(face.get("Reasons", []))
            if not r.get("FaceRecords") and not r.get("UnindexedFaces"):
                no_face_images += 1
        if "Error" in entry:
            failed.append((str(path), message))
            app.err.print(f"error: {path}: {message}", markup=False)
        results.append(entry)
        return True

    # Images run `workers` at a time (IndexFaces calls in threads: the engine detects on all cores,
    # bench/pipeline.py); results are taken in file order, so output and summary read as before.
    pending: deque[tuple[Path, dict[str, Any], Future]] = deque()
    todo = iter(files)
    with bar, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceledger-index") as pool:
        task = bar.add_task("index", total=len(files), faces=0)
        while True:
            while fatal is None and len(pending) < 2 * workers:
                nxt = next(todo, None)
                if nxt is None:
                    break
                path, relative = nxt
                ext_id = external_image_id(relative)
                pending.append((path, {"Path": str(path), "ExternalImageId": ext_id},
                                pool.submit(index_one, path, ext_id)))
            if not pending:
                break
            path, entry, future = pending.popleft()
            if fatal is not None and future.cancel():
                continue  # never started: after a fatal error, start nothing new
            if record(path, entry, future):  # images already running when a fatal error came are reported
                bar.update(task, advance=1, faces=indexed)

    summary = {
        "Images": len(files),
        "ImagesProcessed": len(results) - len(failed),
        "ImagesFailed": len(failed),
        "ImagesWithoutFaces": no_face_images,
        "FacesIndexed": indexed,
        "FacesNotIndexed": unindexed_faces,
        "FacesNotIndexedByReason": dict(sorted(unindexed.items())),
    }
    if app.as_json:
        app.print_json({"CollectionId": collection_id, "Images": results, "Summary": summary})
    else:
        out = app.out
        out.print(f"collection {collection_id}: {summary['ImagesProcessed']} of {len(files)} images processed")
        out.print(f"  faces indexed:      {indexed}")
        reasons = ", ".join(f"{k} {v}" for k, v in summary["FacesNotIndexedByReason"].items())
        out.print(f"  faces not indexed:  {unindexed_faces}" + (f" ({reasons})" if reasons else ""),
                  markup=False)
        out.print(f"  images, no face:    {no_face_images}")
        out.print(f"  images with errors: {len(failed)}")
        for path, message in failed:
            out.print(f"    {path}: {message}", markup=False)
    if fatal is not None:
        raise fatal
    if failed:
        raise CliError(f"{len(failed)} of {len(files)} images failed", 1)


# ---- search, compare, detect ----------------------------------------------------------------------


def print_face_matches(app: App, matches: list[dict[str, Any]], what: str, threshold: float) -> None:
    if not matches:
        app.out.print(f"no match in {what} at threshold {threshold:g}")
        return
    table = app.table("FaceId", "ExternalImageId", "Similarity")
    for m in matches:
        face = m.get("Face", {})
        table.add_row(face.get("FaceId", ""), face.get("ExternalImageId", ""), fmt_pct(m.get("Similarity")))
    app.out.print(table)


@client_command(main, "search")
@click.argument("collection_id")
@click.argument("image", required=False, type=image_path)
@click.option("--face-id", default=None, help="Search with a face already in the collection (SearchFaces).")
@click.option("--threshold", type=click.FloatRange(0, 100), default=80.0, show_default=True,
              help="FaceMatchThreshold: lowest Similarity to report.")
@click.option("--max-faces", type=click.IntRange(1, 4096), default=None, help="Report at most N matches.")
@click.option("--quality-filter", type=click.Choice(["NONE", "AUTO", "LOW", "MEDIUM", "HIGH"]), default=None)
def search(app: App, collection_id: str, image: Path | None, face_id: str | None, threshold: float,
           max_faces: int | None, quality_filter: str | None) -> None:
    """Search COLLECTION_ID for the largest face of IMAGE, or for --face-id."""
    if (image is None) == (face_id is None):
        raise click.UsageError("give exactly one of IMAGE or --face-id")
    params: dict[str, Any] = {"CollectionId": collection_id, "FaceMatchThreshold": threshold}
    if max_faces is not None:
        params["MaxFaces"] = max_faces
    if face_id is not None:
        if quality_filter is not None:
            raise click.UsageError("--quality-filter applies to IMAGE searches only")
        r = app.call("search_faces", FaceId=face_id, **params)
        if app.as_json:
            return app.print_json(r)
        app.out.print(f"searched face {face_id}")
    else:
        if quality_filter is not None:
            params["QualityFilter"] = quality_filter
        r = app.call("search_faces_by_image", Image=read_image(image), **params)
        if app.as_json:
            return app.print_json(r)
        app.out.print(f"searched face in {image}: {fmt_box(r.get('SearchedFaceBoundingBox'), image_size(image))}"
                      f" (confidence {fmt_pct(r.get('SearchedFaceConfidence'))})", markup=False)
    app.print_search_risk()
    print_face_matches(app, r.get("FaceMatches", []), collection_id, threshold)


@client_command(main, "compare")
@click.argument("source", type=image_path)
@click.argument("target", type=image_path)
@click.option("--threshold", type=click.FloatRange(0, 100), default=80.0, show_default=True,
              help="SimilarityThreshold: lowest Similarity that counts as a match.")
@click.option("--quality-filter", type=click.Choice(["NONE", "AUTO", "LOW", "MEDIUM", "HIGH"]), default=None)
def compare(app: App, source: Path, target: Path, threshold: float, quality_filter: str | None) -> None:
    """Compare the largest face of SOURCE with every face of TARGET."""
    app.stateless = True
    params: dict[str, Any] = {"SimilarityThreshold": threshold}
    if quality_filter is not None:
        params["QualityFilter"] = quality_filter
    r = app.call("compare_faces", SourceImage=read_image(source), TargetImage=read_image(target), **params)
    if app.as_json:
        return app.print_json(r)
    src = r.get("SourceImageFace", {})
    app.out.print(f"source face in {source}: {fmt_box(src.get('BoundingBox'), image_size(source))}", markup=False)
    matches, unmatched = r.get("FaceMatches", []), r.get("UnmatchedFaces", [])
    if not matches:
        app.out.print(f"no match in {target} at threshold {threshold:g} "
                      f"({len(unmatched)} face{'s' if len(unmatched) != 1 else ''} below it)", markup=False)
    if not matches and not unmatched:
        return
    size = image_size(target)
    table = app.table("#", "Target face box", "Similarity", "Match")
    n = 0
    for m in matches:
        n += 1
        table.add_row(str(n), fmt_box(m.get("Face", {}).get("BoundingBox"), size), fmt_pct(m.get("Similarity")),
                      "match")
    for face in unmatched:
        n += 1
        table.add_row(str(n), fmt_box(face.get("BoundingBox"), size), f"< {threshold:g}", "-")
    app.out.print(table)


@client_command(main, "detect")
@click.argument("image", type=image_path)
def detect(app: App, image: Path) -> None:
    """Detect the faces in IMAGE: box, confidence, pose and quality (--json adds landmarks)."""
    app.stateless = True
    r = app.call("detect_faces", Image=read_image(image), Attributes=["ALL"])
    if app.as_json:
        return app.print_json(r)
    faces = r.get("FaceDetails", [])
    app.out.print(f"{len(faces)} face{'s' if len(faces) != 1 else ''} in {image}", markup=False)
    if not faces:
        return
    size = image_size(image)
    table = app.table("#", "Box", "Confidence", "Roll", "Yaw", "Pitch", "Brightness", "Sharpness")
    for i, face in enumerate(faces, 1):
        pose, quality = face.get("Pose", {}), face.get("Quality", {})
        table.add_row(str(i), fmt_box(face.get("BoundingBox"), size), fmt_pct(face.get("Confidence")),
                      *(f"{pose[k]:+.0f}" if k in pose else "" for k in ("Roll", "Yaw", "Pitch")),
                      *(f"{quality[k]:.0f}" if k in quality else "" for k in ("Brightness", "Sharpness")))
    app.out.print(table)


# ---- faces ----------------------------------------------------------------------------------------


@main.group()
def faces() -> None:
    """List and delete the faces of a collection."""


@client_command(faces, "list")
@click.argument("collection_id")
@click.option("--user-id", default=None, help="Only the faces associated with this user.")
def faces_list(app: App, collection_id: str, user_id: str | None) -> None:
    """List the faces of COLLECTION_ID."""
    params: dict[str, Any] = {"CollectionId": collection_id}
    if user_id:
        params["UserId"] = user_id
    r = app.pages("list_faces", ("Faces",), **params)
    if app.as_json:
        return app.print_json(r)
    found = r.get("Faces", [])
    if not found:
        app.out.print(f"no faces in {collection_id}" + (f" for user {user_id}" if user_id else ""))
        return
    with_users = any(face.get("UserId") for face in found)
    table = app.table("FaceId", "ExternalImageId", *(["UserId"] if with_users else []))
    for face in found:
        table.add_row(face.get("FaceId", ""), face.get("ExternalImageId", ""),
                      *([face.get("UserId", "")] if with_users else []))
    app.out.print(table)
    app.out.print(f"{len(found)} face{'s' if len(found) != 1 else ''}")


@client_command(faces, "delete")
@click.argument("collection_id")
@click.argument("face_ids", nargs=-1, required=True)
def faces_delete(app: App, collection_id: str, face_ids: tuple[str, ...]) -> None:
    """Delete faces from COLLECTION_ID."""
    deleted: list[str] = []
    unsuccessful: list[dict[str, Any]] = []
    ids = list(face_ids)
    for start in range(0, len(ids), 4096):
        r = app.call("delete_faces", CollectionId=collection_id, FaceIds=ids[start:start + 4096])
        deleted += r.get("DeletedFaces", [])
        unsuccessful += r.get("UnsuccessfulFaceDeletions", [])
    if app.as_json:
        app.print_json({"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": unsuccessful})
    else:
        for face_id in deleted:
            app.out.print(f"deleted {face_id}")
        for entry in unsuccessful:
            owner = f" (user {entry['UserId']})" if entry.get("UserId") else ""
            app.out.print(f"not deleted {entry.get('FaceId')}: {_reasons(entry)}{owner}", markup=False)
    if unsuccessful:
        raise CliError(f"{len(unsuccessful)} of {len(ids)} faces not deleted", 1)


# ---- users ----------------------------------------------------------------------------------------


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

_DATA_OPTION = click.option("--data", "data_dir", default="./data", show_default=True,
                            type=click.Path(path_type=Path), help="Data folder (works while a server runs on it).")


def _local_service(data_dir: Path, must_exist: bool = True) -> Any:
    from .service import Service, ServiceConfig

    if must_exist and not (data_dir / "faceledger.db").exists():
        raise CliError(f"no faceledger data in {data_dir} (no faceledger.db)")
    return Service(ServiceConfig(data_dir=data_dir))


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
    from .service import RequestContext
    from .service.errors import RekognitionError

    data_dir.mkdir(parents=True, exist_ok=True)
    service = _local_service(data_dir, must_exist=False)
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
def policy_set(app: App, collection_id: str, min_threshold: float | None, below_minimum: str | None,
               max_faces: int | None, require_purpose: bool | None, retention_days: int | None) -> None:
    """Set COLLECTION_ID's policy (replaces the previous one; recorded in the ledger)."""
    doc: dict[str, Any] = {}
    for key, value in (("MinFaceMatchThreshold", min_threshold), ("BelowMinimum", below_minimum),
                       ("MaxFaces", max_faces), ("RequirePurpose", require_purpose),
                       ("RetentionDays", retention_days)):
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
def erase(app: App, external_image_id: str) -> None:
    """Erase every face of an ExternalImageId in every collection, overwriting it on disk; prints a receipt."""
    r = app.extension("EraseFaces", ExternalImageId=external_image_id)
    if app.as_json:
        return app.print_json(r)
    faces = r.get("ErasedFaces", [])
    app.out.print(f"erased {len(faces)} face{'s' if len(faces) != 1 else ''} of {external_image_id} "
                  f"(receipt {r.get('ErasureId')})", markup=False)
    for face in faces:
        app.out.print(f"  {face['CollectionId']} {face['FaceId']}", markup=False)


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


def _error_parts(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return error.get("Code", "Unknown"), error.get("Message") or exc.response.get("message") or str(exc)


# ---- eval: measure what the engine gets wrong, and for whom ------------------------------------------


@main.group("eval")
def eval_group() -> None:
    """Evaluate the engine on labelled data (person folders): verification, 1:N identification, calibration."""


_EVAL_DATASET = click.option("--dataset", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                             help="A folder of person folders (Name/Name_0001.jpg), as LFW.")
_EVAL_GROUPS = click.option("--groups", "groups_file", default=None, type=click.Path(exists=True, dir_okay=False,
                            path_type=Path), help="CSV mapping an image or an identity to a group label.")
_EVAL_OUT = click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                         help="Folder for report.html and report.json.")
_EVAL_CACHE = click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                           help="Embeddings cache (default $FACELEDGER_CACHE or ~/.cache/faceledger/embeddings).")
_EVAL_SEED = click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random draws.")


@eval_group.command("verify")
@_EVAL_DATASET
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pairs in LFW's pairs.txt format.")
@click.option("--impostors", default=0, show_default=True, type=click.IntRange(min=0),
              help="Draw N extra impostor pairs across all identities (FAR 1e-4 needs far more than 3,000).")
@_EVAL_GROUPS
@_EVAL_OUT
@_EVAL_CACHE
@_EVAL_SEED
def eval_verify(dataset: Path, pairs_file: Path, impostors: int, groups_file: Path | None, out_dir: Path,
                cache_dir: Path | None, seed: int) -> None:
    """1:1 verification: 10-fold accuracy, ROC/DET, EER, TAR at FAR 1e-2/1e-3/1e-4 (counts, 95% CIs)."""
    from .evaluation import run

    r = run.verify(dataset, pairs_file, out_dir, impostors=impostors, groups_file=groups_file, seed=seed,
                   cache_dir=cache_dir)
    click.echo(f"accuracy (10-fold) {r['accuracy']:.4f} +- {r['accuracy_std']:.4f}; EER {r['eer']:.4f}; "
               f"{r['pairs']['matched']} matched, {r['pairs']['impostors_used']} impostor pairs")
    for name, v in r["tar_at_far_detail"].items():
        lo, hi = v["tar"]["ci95"]
        click.echo(f"  TAR at FAR {name}: {v['tar']['rate']:.4f} ({v['tar']['k']}/{v['tar']['n']}, 95% CI "
                   f"{lo:.4f}-{hi:.4f}) at Similarity {v['similarity']:.1f}"
                   + ("" if v["measurable"] else " (NOT measurable: too few impostor pairs; use --impostors)"))
    click.echo(f"report: {out_dir / 'report.html'}, {out_dir / 'report.json'}")


@eval_group.command("identify")
@_EVAL_DATASET
@click.option("--gallery-size", required=True, type=click.IntRange(min=0),
              help="Identities in the gallery, one image each (0: the largest the dataset allows).")
@click.option("--nonmated", default=500, show_default=True, type=click.IntRange(min=1),
              help="Identities held out of the gallery, searched as strangers.")
@_EVAL_GROUPS
@_EVAL_OUT
@_EVAL_CACHE
@_EVAL_SEED
def eval_identify(dataset: Path, gallery_size: int, nonmated: int, groups_file: Path | None, out_dir: Path,
                  cache_dir: Path | None, seed: int) -> None:
    """1:N identification: FNIR and FPIR at Similarity 80/90/95/99 and the default policy."""
    from .evaluation import run

    try:
        r = run.identify(dataset, out_dir, gallery_size=gallery_size, nonmated=nonmated, groups_file=groups_file,
                         seed=seed, cache_dir=cache_dir)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"gallery {r['gallery_size']}; {r['mated_searches']} mated, {r['nonmated_searches']} non-mated searches")
    for name, v in r["at"].items():
        click.echo(f"  {name:>16} (Similarity {v['similarity']:.1f}): FNIR {v['fnir']['rate']:.4f}  FPIR "
                   f"{v['fpir']['rate']:.4f}  false matches expected {v['expected_false_matches']:.2f}, observed "
                   f"{v['observed_false_matches']}")
    click.echo(f"report: {out_dir / 'report.html'}, {out_dir / 'report.json'}")


@eval_group.command("calibrate")
@_EVAL_DATASET
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Calibration table to write (JSON; use with faceledger serve --calibration).")
@_EVAL_CACHE
def eval_calibrate(dataset: Path, out_file: Path, cache_dir: Path | None) -> None:
    """Build a Similarity calibration (distance -> FMR) from your own labelled images."""
    from .evaluation import run
    from .vision.similarity import SimilarityScale

    obj = run.calibrate(dataset, out_file, cache_dir=cache_dir)
    scale = SimilarityScale.from_dict(obj)
    click.echo(f"{obj['impostor_pairs']} impostor pairs; wrote {out_file}")
    for s in (60, 70, 80, 90, 95, 99):
        click.echo(f"  Similarity {s}: distance <= {scale.max_distance(s):.4f} (FMR {scale.fmr(s):.3g})")
