"""What every command shares: the App (local data folder or --endpoint), errors, image helpers, formatting."""

from __future__ import annotations

import base64
import functools
import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

import click
from botocore.exceptions import ClientError
from click.core import ParameterSource

DEFAULT_PORT = 8373


# --------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Errors that concern one image of an `index` run: reported and counted, the run goes on.
PER_IMAGE_ERRORS = {
    "InvalidImageFormatException",
    "ImageTooLargeException",
    "InvalidParameterException",
    "InvalidS3ObjectException",
}


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
        self.out = console()
        self.err = console(stderr=True)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._endpoint_client() if self.endpoint else self._local_client()
        return self._client

    def _local_client(self) -> Any:
        from ..client import Client
        from ..service import RequestContext, Service, ServiceConfig
        from ..store.files import private_umask

        private_umask()  # what this process writes in the data folder is the owner's alone
        context = RequestContext(transport="cli", purpose=self.purpose, case_reference=self.case)
        if self.stateless:  # detect and compare never touch a collection: leave no ./data behind
            from ..store.sqlite import SQLiteStore

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
            raise self._explained(ClientError(
                {"Error": error, "ResponseMetadata": {"HTTPStatusCode": response.status_code}}, operation))
        return body

    def _explained(self, exc: ClientError) -> ClientError:
        """``exc``, its message followed by how to give credentials when --endpoint refused the ones sent, or by
        the options that send a purpose and a case reference when the service asks for their headers."""
        error = exc.response.setdefault("Error", {})
        if self.endpoint and error.get("Code") in CREDENTIAL_ERRORS:
            error["Message"] = (error.get("Message") or "").rstrip() + "\n" + credentials_hint(self.endpoint)
        elif error.get("Code") == "AccessDeniedException" and "X-Faceledger-Purpose" in (error.get("Message") or ""):
            error["Message"] = (error.get("Message") or "").rstrip() + PURPOSE_HINT
        return exc

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            response = getattr(self.client, method)(**params)
        except ClientError as exc:
            raise self._explained(exc) from None
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
            elif name.endswith("Id"):  # other ids: whole unless a terminal is too narrow for them
                table.add_column(name, no_wrap=True, overflow="fold")
            else:
                table.add_column(name, justify="right" if numeric else "left", overflow="fold")
        return table

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()


#: How the command line sends the X-Faceledger-Purpose and X-Faceledger-Case headers a refusal asks for.
PURPOSE_HINT = ("\nOn the command line: --purpose WHY --case REF (or the environment variables FACELEDGER_PURPOSE "
                "and FACELEDGER_CASE); both are recorded in the ledger.")

#: What a server answers to a request it cannot tie to one of its keys (docs/accountability.md).
CREDENTIAL_ERRORS = {"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
                     "MissingAuthenticationTokenException"}


def credentials_hint(endpoint: str) -> str:
    """How to give --endpoint a key of that server (which credentials were sent, where keys come from)."""
    import os

    import boto3

    found = boto3.Session().get_credentials()
    sent = ("no credentials were configured, so 'local'/'local' was sent (only `faceledger serve --dev` "
            "accepts it)" if found is None else f"the credentials sent came from {found.method}")
    profile = os.environ.get("AWS_PROFILE")
    return (f"{endpoint} did not accept the key: {sent}{f' (AWS_PROFILE={profile})' if profile else ''}. "
            "Give a key of that server: the admin key of its first start is the profile 'faceledger' in "
            "its data folder's credentials file (export AWS_SHARED_CREDENTIALS_FILE=DATA/credentials "
            "AWS_PROFILE=faceledger), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of a key from "
            "`faceledger keys create --data DATA --name NAME --json`.")


def console(stderr: bool = False) -> Any:
    """A rich Console for stdout (or stderr). On a terminal, lines fit its width; otherwise (a pipe, a file)
    nothing is wrapped or cut: tables take the width their cells need, so ids stay whole on one line."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, soft_wrap=True, width=NOT_A_TERMINAL_WIDTH)
    return out


#: The width of output that is not a terminal: wider than any table faceledger prints.
NOT_A_TERMINAL_WIDTH = 10_000


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


def fmt_gender_smile(face: dict[str, Any]) -> list[str]:
    """A FaceDetail's Gender and Smile cells ("Male 97%", "yes 88%"; "-" where the face has none)."""
    g, smile = face.get("Gender"), face.get("Smile")
    return [f"{g['Value']} {g['Confidence']:.0f}%" if g else "-",
            f"{'yes' if smile['Value'] else 'no'} {smile['Confidence']:.0f}%" if smile else "-"]


def _reasons(entry: dict[str, Any]) -> str:
    return ", ".join(entry.get("Reasons", []))


# ---- collections ----------------------------------------------------------------------------------



_DATA_OPTION = click.option("--data", "data_dir", default="./data", show_default=True,
                            type=click.Path(path_type=Path), help="Data folder (works while a server runs on it).")


def _local_service(data_dir: Path, must_exist: bool = True) -> Any:
    from ..service import Service, ServiceConfig
    from ..store.files import private_umask

    private_umask()  # what this process writes in the data folder is the owner's alone
    if must_exist and not os.environ.get("FACELEDGER_DATABASE") and not (data_dir / "faceledger.db").exists():
        raise CliError(f"no faceledger data in {data_dir} (no faceledger.db)")
    return Service(ServiceConfig(data_dir=data_dir))




def _error_parts(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return error.get("Code", "Unknown"), error.get("Message") or exc.response.get("message") or str(exc)


# ---- eval: measure what the engine gets wrong, and for whom ------------------------------------------


