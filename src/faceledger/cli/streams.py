"""``faceledger streams``: live sources, sinks and stream processors (docs/streams.md)."""

from __future__ import annotations

from typing import Any

import click
from botocore.exceptions import ClientError

from .common import App, CliError, client_command
from .main import main

#: The account and region of the ARNs the CLI builds from names (the server accepts any in these ARNs).
ACCOUNT, REGION = "000000000000", "us-east-1"
#: CreateStreamProcessor requires a RoleArn; faceledger does not use it.
DEFAULT_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/faceledger-streams"


def video_stream_arn(source: str, region: str | None = None) -> str:
    """The Kinesis video stream ARN that stands for the source named ``source``."""
    return f"arn:aws:kinesisvideo:{region or REGION}:{ACCOUNT}:stream/{source}"


def data_stream_arn(stream: str, region: str | None = None) -> str:
    """The Kinesis data stream ARN whose records go to ``<data>/streams/<stream>.jsonl``."""
    return f"arn:aws:kinesis:{region or REGION}:{ACCOUNT}:stream/{stream}"


@main.group()
def streams() -> None:
    """Live video: named sources (RTSP, RTMP, HLS, files, cameras), sinks and stream processors."""


@streams.group()
def sources() -> None:
    """Named live sources; a processor reads one through its Kinesis video stream ARN."""


@client_command(sources, "add")
@click.argument("name")
@click.argument("url")
def sources_add(app: App, name: str, url: str) -> None:
    """Name a source: URL is rtsp://, rtmp://, http(s):// (HLS), a video file's absolute path or /dev/videoN."""
    r = app.extension("AddStreamSource", Name=name, Url=url)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"source {r['Name']} ({r['Kind']}): {r['Url']}\n  Kinesis video stream ARN: "
                  f"{r['KinesisVideoStreamArn']}", markup=False)


@client_command(sources, "list")
def sources_list(app: App) -> None:
    """List the named sources (passwords in URLs are shown as ***)."""
    r = app.extension("ListStreamSources")
    if app.as_json:
        return app.print_json(r)
    if not r.get("Sources"):
        app.out.print("no sources")
        return
    table = app.table("Name", "Kind", "Url", "KinesisVideoStreamArn")
    for s in r["Sources"]:
        table.add_row(s["Name"], s["Kind"], s["Url"], s["KinesisVideoStreamArn"])
    app.out.print(table)


@client_command(sources, "remove")
@click.argument("name")
def sources_remove(app: App, name: str) -> None:
    """Forget the source NAME (refused while a processor uses it)."""
    r = app.extension("RemoveStreamSource", Name=name)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"source {name} removed", markup=False)


@streams.group()
def sinks() -> None:
    """Where a Kinesis data stream ARN's records go: always <data>/streams/NAME.jsonl, and a webhook if set."""


@client_command(sinks, "set")
@click.argument("stream")
@click.option("--webhook", default=None, help="POST each record to this http(s) URL (omit: no webhook).")
def sinks_set(app: App, stream: str, webhook: str | None) -> None:
    """Set the webhook of the Kinesis data stream STREAM (a name, or its ARN)."""
    arn = stream if stream.startswith("arn:") else data_stream_arn(stream, app.region)
    r = app.extension("PutStreamSink", Arn=arn, WebhookUrl=webhook)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"{r['Arn']}: {r['File']}" + (f" and {r['WebhookUrl']}" if r.get("WebhookUrl") else ""),
                  markup=False)


@client_command(sinks, "list")
def sinks_list(app: App) -> None:
    """List the sinks that have a webhook."""
    r = app.extension("ListStreamSinks")
    if app.as_json:
        return app.print_json(r)
    if not r.get("Sinks"):
        app.out.print("no sinks with a webhook (every Kinesis data stream ARN still writes <data>/streams/NAME.jsonl)")
        return
    table = app.table("Arn", "File", "WebhookUrl")
    for s in r.get("Sinks", []):
        table.add_row(s["Arn"], s["File"], s.get("WebhookUrl") or "")
    app.out.print(table)


@streams.group()
def processors() -> None:
    """Stream processors (Rekognition's CreateStreamProcessor and the rest)."""


@client_command(processors, "create")
@click.argument("name")
@click.option("--source", required=True, help="The source to read (its name, as `streams sources add`).")
@click.option("--collection", "collection_id", default=None, help="Face search: the collection to search.")
@click.option("--threshold", type=click.FloatRange(0, 100), default=None,
              help="FaceMatchThreshold (default 80; lower values are raised to 80).")
@click.option("--labels", default=None,
              help="Label detection (ConnectedHome) instead of face search: PERSON, PET or ALL (PERSON and PET), "
                   "comma-separated; needs --s3-bucket (its images go there).")
@click.option("--min-confidence", type=click.FloatRange(0, 100), default=None,
              help="ConnectedHome MinConfidence (default 50).")
@click.option("--notify-topic", default=None,
              help="ConnectedHome: the SNS topic ARN whose webhook (`serve --notify ARN=URL`) gets the notifications.")
@click.option("--output-stream", default=None,
              help="Kinesis data stream name for the records (face search default: the processor's name): "
                   "<data>/streams/NAME.jsonl.")
@click.option("--s3-bucket", default=None, help="Also write the records to this bucket of the buckets folder.")
@click.option("--s3-prefix", default="", help="Key prefix of the S3 objects.")
def processors_create(app: App, name: str, source: str, collection_id: str | None, threshold: float | None,
                      labels: str | None, min_confidence: float | None, notify_topic: str | None,
                      output_stream: str | None, s3_bucket: str | None, s3_prefix: str) -> None:
    """Create the processor NAME: face search of COLLECTION in SOURCE (needs --purpose and --case, and the
    collection's policy must allow live search: `faceledger policy set COLLECTION --allow-live-search`), or, with
    --labels, PERSON and PET detection (docs/streams.md)."""
    if (collection_id is None) == (labels is None):
        raise CliError("give --collection (face search) or --labels (label detection), one of them")
    if labels is not None and not s3_bucket:
        raise CliError("--labels needs --s3-bucket BUCKET (a folder of the server's buckets folder): the frames and "
                       "crops of its detections go there")
    output: dict[str, Any] = {}
    if output_stream or labels is None:
        output["KinesisDataStream"] = {"Arn": data_stream_arn(output_stream or name, app.region)}
    if s3_bucket:
        output["S3Destination"] = {"Bucket": s3_bucket, "KeyPrefix": s3_prefix}
    extra: dict[str, Any] = {}
    if labels is not None:
        home: dict[str, Any] = {"Labels": [label.strip().upper() for label in labels.split(",") if label.strip()]}
        if min_confidence is not None:
            home["MinConfidence"] = min_confidence
        settings: dict[str, Any] = {"ConnectedHome": home}
        if notify_topic:
            extra["NotificationChannel"] = {"SNSTopicArn": notify_topic}
    else:
        search: dict[str, Any] = {"CollectionId": collection_id}
        if threshold is not None:
            search["FaceMatchThreshold"] = threshold
        settings = {"FaceSearch": search}
    r = app.call("create_stream_processor", Name=name, RoleArn=DEFAULT_ROLE_ARN,
                 Input={"KinesisVideoStream": {"Arn": video_stream_arn(source, app.region)}}, Output=output,
                 Settings=settings, **extra)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"created stream processor {name} ({r['StreamProcessorArn']})", markup=False)


@client_command(processors, "start")
@click.argument("name")
@click.option("--max-duration", type=click.IntRange(1, 120), default=None,
              help="Stop by itself after this many seconds (1 to 120: StopSelector.MaxDurationInSeconds).")
def processors_start(app: App, name: str, max_duration: int | None) -> None:
    """Start NAME. Processors run in the server: without --endpoint this records the start, and the next
    `faceledger serve` on this data folder runs it."""
    params: dict[str, Any] = {"Name": name}
    if max_duration:
        params["StopSelector"] = {"MaxDurationInSeconds": max_duration}
    r = app.call("start_stream_processor", **params)
    if app.as_json:
        return app.print_json(r)
    where = "" if app.endpoint else " (it runs when `faceledger serve` runs on this data folder)"
    app.out.print(f"started {name}, session {r.get('SessionId')}{where}", markup=False)


@client_command(processors, "stop")
@click.argument("name")
def processors_stop(app: App, name: str) -> None:
    """Stop NAME (recorded in the ledger)."""
    r = app.call("stop_stream_processor", Name=name)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"stopped {name}", markup=False)


@client_command(processors, "describe")
@click.argument("name")
def processors_describe(app: App, name: str) -> None:
    """Show NAME: status, message, source, output, and its counters (frames received, analysed, dropped, lag)."""
    r = app.call("describe_stream_processor", Name=name)
    try:
        status = app.extension("GetStreamProcessorStatus", Name=name)
    except ClientError as exc:  # a key allowed DescribeStreamProcessor on its collection, not faceledger:* on *
        if exc.response.get("Error", {}).get("Code") != "AccessDeniedException":
            raise
        status = None
        app.err.print(f"counters not shown: {exc.response['Error'].get('Message', '')}; the StatusMessage has the "
                      "main ones", markup=False)
    if app.as_json:
        return app.print_json({"StreamProcessor": r, "Status": status})
    source = r.get("Input", {}).get("KinesisVideoStream", {}).get("Arn", "").rpartition(":stream/")[2].split("/")[0]
    status = status or {}
    rows = [("Name", r["Name"]), ("Arn", r["StreamProcessorArn"]), ("Status", r["Status"]),
            ("StatusMessage", r.get("StatusMessage", "")), ("Source", status.get("Source", source)),
            *_settings_rows(r["Settings"]),
            ("Output", _output_text(r["Output"]))]
    for key, value in (status.get("Stats") or {}).items():
        rows.append((key, "" if value is None else str(value)))
    table = app.table("Field", "Value")
    for row in rows:
        table.add_row(*row)
    app.out.print(table)


def _output_text(output: dict[str, Any]) -> str:
    """A processor's Output in words: its Kinesis data stream ARN and its S3 destination as s3://BUCKET/PREFIX."""
    parts = []
    if "KinesisDataStream" in output:
        parts.append(f"KinesisDataStream {output['KinesisDataStream'].get('Arn', '')}")
    if "S3Destination" in output:
        s3 = output["S3Destination"]
        parts.append(f"S3Destination s3://{s3.get('Bucket', '')}/{s3.get('KeyPrefix', '')}")
    return "; ".join(parts)


def _settings_rows(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """The describe table's rows of a face search or a ConnectedHome processor's Settings."""
    if "ConnectedHome" in settings:
        home = settings["ConnectedHome"]
        return [("Labels", ", ".join(home.get("Labels", []))), ("MinConfidence", str(home.get("MinConfidence", "")))]
    search = settings.get("FaceSearch", {})
    return [("Collection", search.get("CollectionId", "")),
            ("FaceMatchThreshold", str(search.get("FaceMatchThreshold", "")))]


@client_command(processors, "list")
def processors_list(app: App) -> None:
    """List the stream processors and their status."""
    r = app.pages("list_stream_processors", ("StreamProcessors",))
    if app.as_json:
        return app.print_json(r)
    if not r.get("StreamProcessors"):
        app.out.print("no stream processors")
        return
    table = app.table("Name", "Status")
    for p in r["StreamProcessors"]:
        table.add_row(p["Name"], p["Status"])
    app.out.print(table)


@client_command(processors, "delete")
@click.argument("name")
def processors_delete(app: App, name: str) -> None:
    """Delete NAME (stop it first; recorded in the ledger)."""
    r = app.call("delete_stream_processor", Name=name)
    if app.as_json:
        return app.print_json(r)
    app.out.print(f"deleted {name}", markup=False)
