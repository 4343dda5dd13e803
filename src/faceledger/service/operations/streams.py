"""Stream processors: CreateStreamProcessor, DescribeStreamProcessor, ListStreamProcessors, StartStreamProcessor,
StopStreamProcessor, UpdateStreamProcessor, DeleteStreamProcessor (and TagResource, UntagResource,
ListTagsForResource on their ARNs, through :mod:`.tags`), with botocore's shapes; and faceledger's own
operations for live sources, sinks and status (``Faceledger.AddStreamSource``, ``ListStreamSources``,
``RemoveStreamSource``, ``PutStreamSink``, ``ListStreamSinks``, ``GetStreamProcessorStatus``).

The model's Kinesis ARNs are mapped to what faceledger has (docs/streams.md):

* ``Input.KinesisVideoStream.Arn`` ``arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME[/CREATED]``: the source
  named NAME (``faceledger streams sources add NAME URL``); InvalidParameterException when there is none;
* ``Output.KinesisDataStream.Arn`` ``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME``: the JSON Lines file
  ``<data>/streams/NAME.jsonl``, plus a webhook when ``PutStreamSink`` set one for that ARN;
* ``Output.S3Destination``: JSON Lines objects in that bucket of the buckets folder.

Live face search is refused (AccessDeniedException naming the policy) unless the collection's policy has
``AllowLiveSearch: true`` and the processor is created with a purpose and a case reference
(X-Faceledger-Purpose, X-Faceledger-Case): they are kept with the processor and recorded with every match.
FaceSearch.FaceMatchThreshold defaults to 80 and is raised to 80 when lower (as Rekognition), then the
collection's policy applies (floor, MaxFaces, RequirePurpose) as to SearchFacesByImage.

Settings.ConnectedHome (label detection, :mod:`faceledger.streams.connected_home`): Labels PERSON and PET (ALL
means both here); PACKAGE, alone or in the list, is InvalidParameterException saying that it is not supported
(a setting of an operation this server runs, refused as its other unsupported settings are;
UnsupportedOperationException is for operations refused whole, service/unsupported.py). Output.S3Destination is
required (frame and crop JPEGs); NotificationChannel's topic must map to a webhook (``serve --notify ARN=URL``).
No collection is searched, so no AllowLiveSearch, purpose or case is needed. StartStreamProcessor takes a
StartSelector and a StopSelector (MaxDurationInSeconds, default 10 as Rekognition's).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from .. import governance, tokens
from ..dispatch import Invocation, operation
from ..errors import (
    AccessDeniedException,
    InvalidParameterException,
    LimitExceededException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ValidationException,
    preview,
)
from ..streams import kinesis_stream_name, kinesis_video_stream_name, max_processors, records_file, runtime_of
from ...streams.connected_home import DEFAULT_MAX_DURATION_S, DEFAULT_MIN_CONFIDENCE, labels_in_force
from ...streams.processor import ProcessorFailed
from ...streams.sinks import SinkError, bucket_folder
from ...streams.source import check_source_url, redact

#: Rekognition's FaceSearch threshold: default 80, and lower values are raised to 80.
MIN_LIVE_THRESHOLD = 80.0
DEFAULT_LIST_SIZE = 1000
MAX_TAGS = 50
_NAME = re.compile(r"^[a-zA-Z0-9_.\-]{1,128}\Z")
ARN_PART = ":streamprocessor/"


def processor_arn(inv: Invocation, name: str) -> str:
    return f"arn:aws:rekognition:{inv.config.region}:{inv.config.account_id}:streamprocessor/{name}"


def is_processor_arn(arn: str) -> bool:
    return isinstance(arn, str) and ARN_PART in arn


def _require(inv: Invocation, name: str):
    record = runtime_of(inv.service).tables.get_processor(name)
    if record is None:
        raise ResourceNotFoundException(f"Stream processor {name} does not exist")
    return record


def _live_search_allowed(inv: Invocation, cid: str, request: dict[str, Any], operation_name: str) -> list[str]:
    """Apply the collection's policy to a live face search (in place on ``request``: FaceMatchThreshold,
    MaxFaces); AccessDeniedException unless AllowLiveSearch and a purpose and a case are given."""
    if inv.store.get_collection(cid) is None:
        raise InvalidParameterException(f"The collection id: {cid} does not exist")
    policy = inv.store.get_collection_policy(cid) or {}
    if policy.get("AllowLiveSearch") is not True:
        raise AccessDeniedException(
            f"Live face search of collection {cid} is refused by its collection policy: AllowLiveSearch is not true "
            f"(set it with `faceledger policy set {cid} --allow-live-search`, PutCollectionPolicy)")
    if not (inv.context.purpose and inv.context.case_reference):
        raise AccessDeniedException(
            f"Live face search of collection {cid} needs a purpose and a case reference: send the "
            "X-Faceledger-Purpose and X-Faceledger-Case headers with CreateStreamProcessor")
    return governance.enforce(policy, "SearchFacesByImage", request, inv.context, cid)


def _clean_url(url: str) -> str:
    """A source's or a webhook's URL as shown: without the password of its user part (cameras' URLs often carry
    one, a webhook's may)."""
    return redact(url)


@operation("CreateStreamProcessor")
def create_stream_processor(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    runtime = runtime_of(inv.service)
    name = req["Name"]
    settings = req["Settings"]
    home = settings.get("ConnectedHome")
    search = settings.get("FaceSearch")
    if home is not None and search is not None:
        raise InvalidParameterException("Settings takes FaceSearch (face search) or ConnectedHome (label "
                                        "detection), not both")
    if home is None and (not search or "CollectionId" not in search):
        raise InvalidParameterException("Settings.FaceSearch.CollectionId (face search) or Settings.ConnectedHome "
                                        "(label detection) is required")
    video_arn = req["Input"].get("KinesisVideoStream", {}).get("Arn")
    source_name = kinesis_video_stream_name(video_arn or "")
    if source_name is None:
        raise InvalidParameterException("Input.KinesisVideoStream.Arn must be a Kinesis video stream ARN "
                                        "(arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME[/CREATED])")
    if runtime.tables.get_source(source_name) is None:
        raise InvalidParameterException(
            f"Input.KinesisVideoStream.Arn names stream {source_name}, which is no source of this server: add it "
            f"with `faceledger streams sources add {source_name} URL` (Faceledger.AddStreamSource)")
    output = req["Output"]
    kds, s3 = output.get("KinesisDataStream"), output.get("S3Destination")
    if not kds and not s3:
        raise InvalidParameterException("Output needs KinesisDataStream or S3Destination")
    if kds and kinesis_stream_name(kds.get("Arn", "")) is None:
        raise InvalidParameterException("Output.KinesisDataStream.Arn must be a Kinesis data stream ARN "
                                        "(arn:aws:kinesis:REGION:ACCOUNT:stream/NAME, NAME of at most 128 "
                                        "characters a-z A-Z 0-9 _ . -)")
    if s3:
        _check_s3(inv, s3, name)
    _check_regions(req.get("RegionsOfInterest"), "RegionsOfInterest")
    tags = req.get("Tags", {})
    if len(tags) > MAX_TAGS:
        raise ServiceQuotaExceededException(f"A resource can have at most {MAX_TAGS} tags; the request has "
                                            f"{len(tags)}")
    if home is not None:
        definition = _connected_home_definition(inv, req, home)
        definition["SourceName"] = source_name
        return _created(inv, runtime, name, definition, tags)
    cid = search["CollectionId"]
    asked = search.get("FaceMatchThreshold")
    threshold = MIN_LIVE_THRESHOLD if asked is None else max(float(asked), MIN_LIVE_THRESHOLD)
    request: dict[str, Any] = {"FaceMatchThreshold": threshold}
    notes = _live_search_allowed(inv, cid, request, "CreateStreamProcessor")
    if asked is not None and asked < MIN_LIVE_THRESHOLD:
        notes.append(f"FaceMatchThreshold {asked:g} raised to {MIN_LIVE_THRESHOLD:g} (Rekognition's minimum)")
    definition = {k: v for k, v in req.items() if k not in ("Tags", "Name")}
    definition["Settings"] = {"FaceSearch": {"CollectionId": cid, "FaceMatchThreshold": request["FaceMatchThreshold"]}}
    definition.update(SourceName=source_name, Principal=inv.context.who(), Purpose=inv.context.purpose,
                      Case=inv.context.case_reference, Notes=notes)
    if "MaxFaces" in request:
        definition["MaxFaces"] = request["MaxFaces"]
    inv.meta.update(ThresholdUsed=request["FaceMatchThreshold"])
    return _created(inv, runtime, name, definition, tags)


def _created(inv: Invocation, runtime, name: str, definition: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    arn = processor_arn(inv, name)
    if not runtime.tables.create_processor(name, arn, definition, tags):
        raise ResourceInUseException(f"Stream processor {name} already exists")
    limit = max_processors()
    if runtime.tables.count_processors() > limit:  # counted inside the write: concurrent Creates cannot pass it
        raise LimitExceededException(f"This server already has {limit} stream processors, its limit "
                                     "(FACELEDGER_STREAM_MAX_PROCESSORS): delete one first")
    return {"StreamProcessorArn": arn}


def _home_labels(labels: list[str]) -> tuple[str, ...]:
    """The labels in force for ConnectedHome Labels (ALL: PERSON and PET); InvalidParameterException for PACKAGE
    (not supported: connected_home.UNSUPPORTED) or an unknown label."""
    try:
        return labels_in_force(labels)
    except ValueError as exc:
        raise InvalidParameterException(str(exc)) from None


def _connected_home_definition(inv: Invocation, req: dict[str, Any], home: dict[str, Any]) -> dict[str, Any]:
    """A ConnectedHome processor's definition: Labels (and the labels in force), MinConfidence (default 50); it
    needs Output.S3Destination (its frame images), and a NotificationChannel topic mapped to a webhook
    (``serve --notify ARN=URL``) when it has one. No collection is searched: no AllowLiveSearch, purpose or case
    is needed (kept when given)."""
    in_force = _home_labels(home["Labels"])
    if not req["Output"].get("S3Destination"):
        raise InvalidParameterException("A ConnectedHome (label detection) stream processor needs "
                                        "Output.S3Destination: the frames and crops of its detections go there")
    _check_channel(inv, req.get("NotificationChannel"))
    definition = {k: v for k, v in req.items() if k not in ("Tags", "Name")}
    definition["Settings"] = {"ConnectedHome": {
        "Labels": list(home["Labels"]), "MinConfidence": float(home.get("MinConfidence", DEFAULT_MIN_CONFIDENCE))}}
    definition.update(LabelsInForce=list(in_force), Principal=inv.context.who(), Purpose=inv.context.purpose,
                      Case=inv.context.case_reference,
                      Notes=[f"labels detected: {', '.join(in_force)}"
                             + (" (ALL means PERSON and PET here: PACKAGE is not detected)"
                                if "ALL" in home["Labels"] else "")])
    return definition


def _check_regions(regions: list[dict[str, Any]] | None, member: str) -> None:
    """RegionsOfInterest as DetectText checks them (InvalidParameterException for a region with neither or both of
    BoundingBox and Polygon, a box outside the frame or of no area, a polygon of fewer than 3 points, more than
    1000, or a point outside [0, 1]): a region that holds no box centre would silence the processor."""
    if regions:
        from .analysis import region_polygons

        region_polygons(regions, member)


def _check_channel(inv: Invocation, channel: dict[str, Any] | None) -> None:
    if channel and channel.get("SNSTopicArn") not in dict(inv.config.video_notify):
        raise InvalidParameterException(
            f"NotificationChannel.SNSTopicArn {preview(channel.get('SNSTopicArn'))} has no webhook on this server "
            "(start it with --notify ARN=URL)")


def _check_s3(inv: Invocation, s3: dict[str, Any], name: str) -> None:
    """S3Destination's bucket and KeyPrefix, and the processor's ``name``: its objects' keys are
    ``<KeyPrefix><name>/<SessionId>/...``, which must stay in the bucket (a processor named ``..``, valid by the
    model, would start them one folder up)."""
    from pathlib import Path

    buckets = inv.config.buckets_dir
    if buckets is None:
        raise InvalidParameterException("This server has no buckets folder for S3Destination (serve --buckets DIR)")
    bucket, prefix = s3.get("Bucket", ""), s3.get("KeyPrefix", "")
    try:
        bucket_folder(Path(buckets), bucket)  # a folder inside the buckets folder, not a link out of it
    except SinkError:
        raise InvalidParameterException(f"S3Destination bucket {preview(bucket)} does not exist in the buckets "
                                        "folder (or is a symbolic link out of it)") from None
    if prefix.startswith("/") or ".." in prefix.split("/") or "\0" in prefix or "//" in prefix:
        raise InvalidParameterException("S3Destination.KeyPrefix must be a relative key prefix without '..' or '//'")
    if ".." in f"{prefix}{name}".split("/"):
        raise InvalidParameterException(f"S3Destination: the objects of a processor are written under "
                                        f"<KeyPrefix><Name>/, and {preview(prefix + name)}/ leaves the bucket: "
                                        "choose another Name or KeyPrefix")
    if any(len(part.encode("utf-8", "surrogatepass")) > 200 for part in prefix.split("/")):  # + the processor's name
        raise InvalidParameterException("S3Destination.KeyPrefix: each part between '/' is at most 200 bytes (a "
                                        "folder or file name of the buckets folder)")


def _status(inv: Invocation, record) -> tuple[str, str | None, dict[str, Any] | None]:
    """(Status, StatusMessage, counters): live when it runs in this process, else as last recorded."""
    runtime = runtime_of(inv.service)
    live = runtime.live(record.name)
    if live is not None:
        return live.status, f"{live.message}; {live.counters()}" if live.status == "RUNNING" else live.message, \
            live.stats.as_dict()
    if record.desired == "RUNNING" and not runtime.hosting and record.status not in ("FAILED",):
        return record.status, record.status_message or "waiting for a faceledger server on this data folder to run it", \
            record.stats
    return record.status, record.status_message, record.stats


@operation("DescribeStreamProcessor")
def describe_stream_processor(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    record = _require(inv, req["Name"])
    status, message, _ = _status(inv, record)
    d = record.definition
    out: dict[str, Any] = {
        "Name": record.name, "StreamProcessorArn": record.arn, "Status": status,
        "CreationTimestamp": record.created_at, "LastUpdateTimestamp": record.updated_at,
        "Input": d["Input"], "Output": d["Output"], "RoleArn": d["RoleArn"], "Settings": d["Settings"],
    }
    if message:
        out["StatusMessage"] = message
    for key in ("NotificationChannel", "KmsKeyId", "RegionsOfInterest", "DataSharingPreference"):
        if key in d:
            out[key] = d[key]
    return out


@operation("ListStreamProcessors")
def list_stream_processors(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    after = tokens.decode(inv.service.pagination_key, "ListStreamProcessors", None, req.get("NextToken"))
    page = runtime_of(inv.service).tables.list_processors(after, req.get("MaxResults", DEFAULT_LIST_SIZE))
    out = {"StreamProcessors": [{"Name": r.name, "Status": _status(inv, r)[0]} for r in page.items]}
    return tokens.with_next_token(inv.service.pagination_key, out, "ListStreamProcessors", None, page.cursor)


@operation("StartStreamProcessor")
def start_stream_processor(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    runtime = runtime_of(inv.service)
    record = _require(inv, req["Name"])
    home = "ConnectedHome" in record.definition["Settings"]
    if req.get("StartSelector") is not None and not home:
        raise InvalidParameterException("StartSelector is for label detection stream processors: a face search "
                                        "processor starts at the newest frame of its live source")
    if runtime.is_running(record.name) or (record.desired == "RUNNING" and record.status in ("STARTING", "RUNNING")
                                           and not runtime.hosting):
        raise ResourceInUseException(f"Stream processor {record.name} is already running")
    max_duration = (req.get("StopSelector") or {}).get("MaxDurationInSeconds")
    values: dict[str, Any] = {}
    if home:
        _check_start_selector(req.get("StartSelector"))
        if max_duration is None:
            max_duration = DEFAULT_MAX_DURATION_S
        values["definition"] = {**record.definition, "LastStart": {
            "Request": req, "At": time.time(), "MaxDurationInSeconds": max_duration}}
    else:
        cid = record.definition["Settings"]["FaceSearch"]["CollectionId"]
        # the collection's policy is checked again: it may have changed since CreateStreamProcessor
        policy = inv.store.get_collection_policy(cid) or {}
        if inv.store.get_collection(cid) is None:
            raise InvalidParameterException(f"The collection id: {cid} does not exist")
        if policy.get("AllowLiveSearch") is not True:
            raise AccessDeniedException(f"Live face search of collection {cid} is refused by its collection policy: "
                                        "AllowLiveSearch is not true")
    session_id = str(uuid.uuid4())
    # one conditional write: of Starts at once, one wins and the others are ResourceInUseException (each had seen
    # the processor stopped); the winner's threads start after the commit, if it is still wanted then
    if not runtime.tables.claim_start(record.name, session_id, "starting" if runtime.hosting else
                                      "waiting for a faceledger server on this data folder to run it",
                                      values.get("definition")):
        raise ResourceInUseException(f"Stream processor {record.name} is already running")
    if runtime.hosting:
        def launch() -> None:
            try:
                runtime.launch_started(record.name, session_id, max_duration_s=max_duration, start=req)
            except (ProcessorFailed, ValueError) as exc:  # the source was removed, its file deleted, ...
                runtime.tables.update_processor(record.name, status="FAILED", status_message=f"cannot start: {exc}",
                                                desired="STOPPED")

        inv.after_commit(lambda: _outside(launch))
    return {"SessionId": session_id}


@operation("StopStreamProcessor")
def stop_stream_processor(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    runtime = runtime_of(inv.service)
    record = _require(inv, req["Name"])
    if not runtime.is_running(record.name) and record.desired != "RUNNING":
        raise ResourceInUseException(f"Stream processor {record.name} is not running (Status {record.status})")
    runtime.tables.update_processor(record.name, desired="STOPPED")
    inv.after_commit(lambda: _outside(lambda: _halted(runtime, record.name)))
    return {}


def _check_start_selector(selector: dict[str, Any] | None) -> None:
    """A label detection processor's StartSelector: KVSStreamStartSelector with exactly one of ProducerTimestamp
    (Unix milliseconds) or FragmentNumber (faceledger's fragment numbers, docs/streams.md); optional here (a
    live source has nothing buffered: a point in the past starts at the newest frame)."""
    if selector is None:
        return
    kvs = selector.get("KVSStreamStartSelector")
    if kvs is None or len({"ProducerTimestamp", "FragmentNumber"} & set(kvs)) != 1:
        raise InvalidParameterException("StartSelector.KVSStreamStartSelector needs one of ProducerTimestamp "
                                        "(Unix time in milliseconds) or FragmentNumber")


def _outside(fn) -> None:
    """Run ``fn`` on a thread of its own and wait for it: after a call's COMMIT, its thread still holds the call's
    unit of work, and writes made there would join it (and be rolled back)."""
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # reported on the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="faceledger-streams-control")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _halted(runtime, name: str) -> None:
    runtime.halt_stopped(name)


def _require_stopped(inv: Invocation, name: str, verb: str):
    """(runtime, record) of a processor that is not running; ResourceInUseException when it is."""
    runtime = runtime_of(inv.service)
    record = _require(inv, name)
    if runtime.is_running(record.name) or record.desired == "RUNNING":
        raise ResourceInUseException(f"Stream processor {record.name} is running: stop it before {verb} it")
    return runtime, record


@operation("UpdateStreamProcessor")
def update_stream_processor(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    runtime, record = _require_stopped(inv, req["Name"], "updating")
    d = dict(record.definition)
    home = d["Settings"].get("ConnectedHome")
    update = (req.get("SettingsForUpdate") or {}).get("ConnectedHomeForUpdate")
    if update and home is None:
        raise InvalidParameterException("ConnectedHomeForUpdate applies to label detection (ConnectedHome) "
                                        "processors only: this is a face search processor")
    if update:
        home = dict(home)
        if "Labels" in update:
            d["LabelsInForce"] = list(_home_labels(update["Labels"]))
            home["Labels"] = list(update["Labels"])
        if "MinConfidence" in update:
            home["MinConfidence"] = float(update["MinConfidence"])
        d["Settings"] = {"ConnectedHome": home}
    if "RegionsOfInterestForUpdate" in req:
        _check_regions(req["RegionsOfInterestForUpdate"], "RegionsOfInterestForUpdate")
        d["RegionsOfInterest"] = req["RegionsOfInterestForUpdate"]
    if "DataSharingPreferenceForUpdate" in req:
        d["DataSharingPreference"] = req["DataSharingPreferenceForUpdate"]
    for param in req.get("ParametersToDelete", []):
        if param == "RegionsOfInterest":
            d.pop("RegionsOfInterest", None)
        elif param == "ConnectedHomeMinConfidence" and home is not None:
            d["Settings"] = {"ConnectedHome": {**home, "MinConfidence": DEFAULT_MIN_CONFIDENCE}}
        else:
            raise InvalidParameterException(f"ParametersToDelete {param} applies to label detection processors only")
    runtime.tables.update_processor(record.name, definition=d)
    return {}


@operation("DeleteStreamProcessor")
def delete_stream_processor(inv: Invocation, req: dict[str, Any]) -> dict[str, Any]:
    runtime, record = _require_stopped(inv, req["Name"], "deleting")
    runtime.halt(record.name)
    if not runtime.tables.delete_processor(record.name, unless_running=True):  # started since the check
        raise ResourceInUseException(f"Stream processor {record.name} is running: stop it before deleting it")
    return {}


# ---------------------------------------------------------------------- tags on processor ARNs (from .tags)


def processor_tags(inv: Invocation, arn: str) -> dict[str, str]:
    record = runtime_of(inv.service).tables.processor_by_arn(arn)
    if record is None:
        raise ResourceNotFoundException(f"The resource {arn} does not exist")
    return record.tags


def set_processor_tags(inv: Invocation, arn: str, add: dict[str, str] | None = None,
                       remove: list[str] | tuple = ()) -> None:
    tags = {k: v for k, v in {**processor_tags(inv, arn), **(add or {})}.items() if k not in set(remove)}
    if len(tags) > MAX_TAGS:
        raise ServiceQuotaExceededException(f"A resource can have at most {MAX_TAGS} tags; this would make {len(tags)}")
    tables = runtime_of(inv.service).tables
    tables.update_processor(tables.processor_by_arn(arn).name, tags=tags)


# ---------------------------------------------------------------------- faceledger's own operations


def _params(params: Any, *members: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ValidationException("Request must be a JSON object")
    unknown = set(params) - set(members)
    if unknown:
        raise ValidationException(f"Unknown members: {', '.join(preview(n, 64) for n in sorted(unknown)[:10])}")
    return params


def _name(params: dict[str, Any], member: str = "Name") -> str:
    value = params.get(member)
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValidationException(f"Value '{preview(value)}' at '{member[0].lower() + member[1:]}' failed to satisfy "
                                  "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-]+ "
                                  "(1 to 128 characters)")
    return value


def _source_view(inv: Invocation, source) -> dict[str, Any]:
    return {"Name": source.name, "Url": _clean_url(source.url), "Kind": source.kind,
            "KinesisVideoStreamArn": f"arn:aws:kinesisvideo:{inv.config.region}:{inv.config.account_id}:stream/"
                                     f"{source.name}",
            "CreatedAt": source.created_at}


def add_stream_source(inv: Invocation, params: Any) -> dict[str, Any]:
    """Name a live source: ``{"Name": str, "Url": rtsp://, rtmp://, http(s):// (HLS), a video file's absolute path,
    or /dev/videoN}``; its Kinesis video stream ARN for CreateStreamProcessor."""
    params = _params(params, "Name", "Url")
    name = _name(params)
    url = params.get("Url")
    try:
        checked = check_source_url(url)
    except ValueError as exc:
        raise InvalidParameterException(f"Url: {exc}") from None
    tables = runtime_of(inv.service).tables
    if not tables.add_source(name, url, checked.kind):
        raise ResourceAlreadyExistsException(f"Stream source {name} already exists")
    return _source_view(inv, tables.get_source(name))


def list_stream_sources(inv: Invocation, params: Any) -> dict[str, Any]:
    """Every named source (passwords in URLs shown as ***)."""
    _params(params)
    return {"Sources": [_source_view(inv, s) for s in runtime_of(inv.service).tables.list_sources()]}


def remove_stream_source(inv: Invocation, params: Any) -> dict[str, Any]:
    """Forget a source; ResourceInUseException while a processor uses it."""
    name = _name(_params(params, "Name"))
    tables = runtime_of(inv.service).tables
    users = tables.processors_using_source(name)
    if users:
        raise ResourceInUseException(f"Stream source {name} is used by stream processor(s) {', '.join(users[:10])}: "
                                     "delete them first")
    if not tables.remove_source(name):
        raise ResourceNotFoundException(f"Stream source {name} does not exist")
    return {"Name": name}


def put_stream_sink(inv: Invocation, params: Any) -> dict[str, Any]:
    """Where a Kinesis data stream ARN's records go besides ``<data>/streams/NAME.jsonl``: ``{"Arn": str,
    "WebhookUrl": http(s) URL or null (none)}``."""
    params = _params(params, "Arn", "WebhookUrl")
    arn = params.get("Arn")
    stream = kinesis_stream_name(arn) if isinstance(arn, str) else None
    if stream is None:
        raise ValidationException("Arn must be a Kinesis data stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)")
    webhook = params.get("WebhookUrl")
    if webhook is not None:
        parts = urlsplit(webhook) if isinstance(webhook, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(webhook) > 2048:
            raise ValidationException("WebhookUrl must be an http:// or https:// URL (at most 2048 characters)")
    runtime_of(inv.service).tables.put_sink(arn, webhook)
    return {"Arn": arn, "File": str(records_file(inv.config.data_dir, stream)),
            "WebhookUrl": None if webhook is None else _clean_url(webhook)}


def list_stream_sinks(inv: Invocation, params: Any) -> dict[str, Any]:
    """Every sink with a webhook (passwords in its URL shown as ***, as sources' are)."""
    _params(params)
    return {"Sinks": [{"Arn": arn, "File": str(records_file(inv.config.data_dir, kinesis_stream_name(arn))),
                       "WebhookUrl": None if url is None else _clean_url(url)}
                      for arn, url in runtime_of(inv.service).tables.list_sinks().items()]}


def get_stream_processor_status(inv: Invocation, params: Any) -> dict[str, Any]:
    """A processor's Status, StatusMessage, SessionId and counters (frames received, analysed, dropped, lag)."""
    name = _name(_params(params, "Name"))
    record = _require(inv, name)
    status, message, stats = _status(inv, record)
    return {"Name": name, "Status": status, "StatusMessage": message, "SessionId": record.session_id,
            "Source": record.definition["SourceName"], "Stats": stats or {}}


governance.EXTENSIONS.update({
    "AddStreamSource": add_stream_source,
    "ListStreamSources": list_stream_sources,
    "RemoveStreamSource": remove_stream_source,
    "PutStreamSink": put_stream_sink,
    "ListStreamSinks": list_stream_sinks,
    "GetStreamProcessorStatus": get_stream_processor_status,
})
