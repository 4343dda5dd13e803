"""``faceledger serve``: the HTTP API."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .. import __version__
from ..httpserver import ServerLimits
from .common import (
    DEFAULT_PORT,
    CliError,
)
from .main import main


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


_LIMITS = ServerLimits()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--data", "data_dir", default="./data", show_default=True, type=click.Path(path_type=Path),
              help="Data folder (the embedded SQLite store), kept mode 0700 with its files 0600.")
@click.option("--database", default=None, envvar="FACELEDGER_DATABASE", metavar="postgresql://...",
              help="Keep every record in this PostgreSQL database instead of DATA/faceledger.db, so several "
                   "servers share one state (docs/distributed.md).")
@click.option("--vector-store", default=None, envvar="FACELEDGER_VECTOR_STORE", metavar="milvus://host:port|FILE.db",
              help="Keep vectors and the approximate search in Milvus (a server, or a Milvus Lite file); the records "
                   "stay in the data folder or --database (docs/distributed.md).")
@click.option("--buckets", "buckets_dir", default=None, type=click.Path(path_type=Path),
              help="Folder whose subfolders serve as S3 buckets for S3Object image inputs.")
@click.option("--upsample", default=None, type=int, help="HOG detector upsampling (default: measured default).")
@click.option("--engine", type=click.Choice(["onnx", "dlib"]), default="onnx", show_default=True,
              help="Embedding runtime: onnx (dlib's network on ONNX Runtime, batched) or dlib (the reference).")
@click.option("--detector", type=click.Choice(["blazeface", "yunet", "hog"]), default=None,
              help="Face detector of the onnx engine for every face model (default: each model's own: yunet, "
                   "YuNet 2023mar, for faceledger-sface-v2 (with dlib's five landmarks) and -v1 (with YuNet's); "
                   "blazeface, BlazeFace tiles checked by HOG, for the older models; see docs/engine.md).")
@click.option("--face-model", type=click.Choice(["faceledger-sface-v2", "faceledger-sface-v1", "faceledger-fusion-v1",
                                                 "dlib-resnet-v1"]),  # vision.engine.FACE_MODELS (tests/test_cli)
              default=None,
              help="Face model of new collections (default: faceledger-sface-v2; dlib-resnet-v1 with --engine "
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
@click.option("--max-connections", default=_LIMITS.max_connections, show_default=True, type=click.IntRange(min=1),
              help="Open connections at most; beyond it the one that has waited longest for a request is closed "
                   "(lowered to fit `ulimit -n`).")
@click.option("--header-timeout", default=_LIMITS.header_timeout, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds a connection may take to send a whole request head (idle and slow clients are cut).")
@click.option("--keep-alive-timeout", default=_LIMITS.keep_alive_timeout, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Seconds an idle connection is kept after a response.")
@click.option("--body-timeout", default=_LIMITS.body_timeout, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds a request body may take to arrive (else 408 RequestTimeoutException, connection closed).")
@click.option("--max-header-bytes", default=_LIMITS.max_header_bytes, show_default=True,
              type=click.IntRange(min=1024), help="Largest request head (else 400).")
@click.option("--analysis-workers", default=0, show_default="the CPUs this process may use, at most 4",
              type=click.IntRange(min=0), help="Image analyses (DetectFaces, IndexFaces, ...) run at once.")
@click.option("--analysis-queue", default=-1, show_default="4 per worker", type=click.IntRange(min=-1),
              help="Image analyses that may wait for a worker; the next is refused with "
                   "ProvisionedThroughputExceededException (HTTP 400, retried by the AWS SDKs).")
@click.option("--log-interval", default=_LIMITS.log_interval, show_default=True, type=click.FloatRange(min=0),
              help="A repeated warning or error is logged once per this many seconds (0: every time).")
@click.option("--video-sample-fps", default=5.0, show_default=True, type=click.FloatRange(min=0.01, max=120),
              help="Frames analysed per second of video by face detection and face search jobs (docs/video.md).")
@click.option("--video-analysis-fps", default=1.0, show_default=True, type=click.FloatRange(min=0.01, max=120),
              help="Frames analysed per second of video by label, moderation and text jobs (docs/video.md).")
@click.option("--video-max-jobs", default=20, show_default=True, type=click.IntRange(min=1),
              help="Video jobs queued or running at most; one more Start* is LimitExceededException.")
@click.option("--video-retention-days", default=7.0, show_default=True, type=click.FloatRange(min=0),
              help="Days a finished video job's results are kept (then ResourceNotFoundException).")
@click.option("--video-workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Video jobs run at once (each on a thread of the server process).")
@click.option("--notify", "notify", multiple=True, metavar="ARN=URL",
              help="NotificationChannel: POST Rekognition's job completion message for SNSTopicArn ARN to the "
                   "webhook URL (repeatable).")
def serve(host: str, port: int, data_dir: Path, buckets_dir: Path | None, upsample: int | None, engine: str,
          face_model: str | None, dev: bool, retention_interval: float, log_level: str, max_efm: str | None = "0.001",
          min_margin: float = 1.0, calibration: Path | None = None, max_connections: int = _LIMITS.max_connections,
          header_timeout: float = _LIMITS.header_timeout, keep_alive_timeout: float = _LIMITS.keep_alive_timeout,
          body_timeout: float = _LIMITS.body_timeout, max_header_bytes: int = _LIMITS.max_header_bytes,
          analysis_workers: int = 0, analysis_queue: int = -1, log_interval: float = _LIMITS.log_interval,
          detector: str | None = None, video_sample_fps: float = 5.0, video_max_jobs: int = 20,
          video_retention_days: float = 7.0, video_workers: int = 1, notify: tuple[str, ...] = (),
          database: str | None = None, vector_store: str | None = None,
          video_analysis_fps: float = 1.0) -> None:
    """Serve the Rekognition API over HTTP, every request signed with a faceledger key.

    In this order: the port is claimed (a busy port fails here, before anything else); every face
    model is fetched, converted and loaded (a failure exits with the cause and how to fill the model
    cache offline); the server listens; the data folder is opened (0700, files 0600). On first start
    (no key yet) an admin key is created and written as the `faceledger` profile of DATA/credentials
    (an AWS shared credentials file, 0600); its secret is printed only when standard output is a
    terminal.
    """
    import logging.config
    import sys

    from ..api import create_app
    from ..httpserver import BACKLOG, bind, descriptor_budget, log_config
    from ..httpserver import serve as run_server
    from ..service import Service, ServiceConfig
    from ..store.files import private_umask
    from ..vision.models import ModelsUnavailable, prepare

    if dev and not _is_loopback(host):
        raise CliError(f"--dev (no authentication) is refused on {host}: it is allowed on loopback only")
    if engine == "dlib" and face_model not in (None, "dlib-resnet-v1"):
        raise CliError(f"--face-model {face_model} needs --engine onnx")
    if detector not in (None, "hog") and (engine == "dlib" or upsample is not None):
        raise CliError(f"--detector {detector} needs --engine onnx and no --upsample")
    limit = _false_match_limit(max_efm)
    notify_map = _notify_pairs(notify)
    try:
        sock = bind(host, port)  # before any side effect: a busy port changes nothing
    except OSError as exc:
        raise CliError(_bind_error(host, port, exc)) from None
    try:
        private_umask()  # every file this process creates: 0600, folders 0700
        logging.config.dictConfig(log_config(log_level, log_interval))
        limits = ServerLimits(max_connections=max_connections, header_timeout=header_timeout,
                              keep_alive_timeout=keep_alive_timeout, body_timeout=body_timeout,
                              max_header_bytes=max_header_bytes, analysis_workers=analysis_workers,
                              analysis_queue=analysis_queue, log_interval=log_interval).resolved()
        limits, lowered = descriptor_budget(limits, threads=40 + limits.analysis_workers + 4)
        if lowered:
            click.echo(f"warning: {lowered}", err=True)
        try:
            prepare(engine, upsample, detector=detector)  # fetch, convert, load and run every model, or fail now
        except ModelsUnavailable as exc:
            raise CliError(str(exc), code=1) from None
        try:
            sock.listen(BACKLOG)
        except OSError as exc:
            raise CliError(_bind_error(host, port, exc)) from None
        service = Service(ServiceConfig(data_dir=data_dir, buckets_dir=buckets_dir, detector_upsample=upsample,
                                        engine=engine, detector=detector, face_model=face_model,
                                        max_expected_false_matches=limit,
                                        min_margin=min_margin, calibration=calibration,
                                        video_sample_fps=video_sample_fps, video_max_jobs=video_max_jobs,
                                        video_retention_days=video_retention_days, video_workers=video_workers,
                                        video_notify=notify_map, database=database,
                                        vector_store=vector_store, video_analysis_fps=video_analysis_fps))
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
        click.echo(f"  limits: {limits.max_connections} connections, {limits.analysis_workers} image analyses at once "
                   f"(+{limits.analysis_queue} waiting), timeouts: head {limits.header_timeout:g} s, body "
                   f"{limits.body_timeout:g} s, keep-alive {limits.keep_alive_timeout:g} s")
        if dev:
            click.echo(
                "  DEVELOPMENT MODE: requests are not authenticated (any signed request is accepted).\n"
                f"  boto3:   boto3.client('rekognition', endpoint_url='{url}', region_name='us-east-1',\n"
                f"                        aws_access_key_id='local', aws_secret_access_key='local')"
            )
        else:
            credentials = data_dir / "credentials"
            admin = service.ensure_admin_key()
            creds = credentials.resolve()
            if admin is not None:
                key_id, secret = admin
                _write_credentials(credentials, "faceledger", key_id, secret)
                if sys.stdout.isatty():  # a person is reading: show it once
                    click.echo(
                        "  first start: created the admin key (shown once, also saved as profile 'faceledger' in "
                        f"{creds}, mode 0600):\n"
                        f"    aws_access_key_id     = {key_id}\n"
                        f"    aws_secret_access_key = {secret}"
                    )
                else:  # a log (journald, docker): never the secret
                    click.echo(f"  first start: created the admin key {key_id}; its secret is in {creds} (profile "
                               "'faceledger', mode 0600) and is not printed because standard output is not a terminal")
            click.echo(
                f"  AWS CLI: AWS_SHARED_CREDENTIALS_FILE={creds} aws --profile faceledger rekognition "
                f"list-collections --endpoint-url {url} --region us-east-1\n"
                f"  boto3:   boto3.Session(profile_name='faceledger')  # with AWS_SHARED_CREDENTIALS_FILE={creds}\n"
                f"           .client('rekognition', endpoint_url='{url}', region_name='us-east-1')\n"
                f"  more keys: faceledger keys create --data {data_dir} --name NAME [--policy FILE]"
            )
        app = create_app(service, authenticate=not dev, retention_interval_s=retention_interval or None, limits=limits)
        run_server(app, sock, limits, log_level=log_level)
    finally:
        sock.close()


def _notify_pairs(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``--notify ARN=URL`` values as (SNS topic ARN, webhook URL) pairs; CliError for a malformed one."""
    pairs = []
    for value in values:
        arn, sep, url = value.partition("=")
        if not sep or not arn.startswith("arn:aws:sns:") or not url.startswith(("http://", "https://")):
            raise CliError(f"--notify must be ARN=URL (an SNS topic ARN and an http(s) URL), not {value!r}")
        pairs.append((arn, url))
    return tuple(pairs)


def _bind_error(host: str, port: int, exc: OSError) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host}:{port}: the port is in use (another faceledger or program); "
                "choose another with --port")
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


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
