"""``faceledger video faces|search|segments FILE``: stored-video jobs, with a progress bar and a summary table.

FILE is a local video file (in-process on the data folder: the file is linked or copied into a private
temporary bucket for the job) or ``s3://BUCKET/NAME``, an object of the buckets folder (--buckets locally,
the server's own with --endpoint).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import click

from .common import App, CliError, client_command, fmt_box, fmt_gender_smile, fmt_pct
from .main import main

#: Sightings of one person less than this far apart (ms) are one time range of the table.
RANGE_GAP_MS = 1000


@main.group()
def video() -> None:
    """Stored video: faces, face search and shot/black-frame segments (asynchronous jobs, docs/video.md)."""


def _video_arg(app: App, file: str) -> tuple[dict[str, Any], Callable[[], None]]:
    """(Video for a Start* call, cleanup). A local FILE gets a temporary bucket (local data folder only)."""
    if file.startswith("s3://"):
        bucket, _, name = file[5:].partition("/")
        if not bucket or not name:
            raise CliError(f"{file}: an S3 location is s3://BUCKET/NAME")
        if not app.endpoint and app.buckets_dir is None:
            raise CliError(f"{file}: an s3:// video is read from a buckets folder: give --buckets DIR (its "
                           "subfolders are the buckets), --endpoint URL of a server started with --buckets, "
                           "or the video's file path")
        return {"S3Object": {"Bucket": bucket, "Name": name}}, lambda: None
    path = Path(file)
    if not path.is_file():
        raise CliError(f"{file}: no such file (give a video file, or s3://BUCKET/NAME of the buckets folder)")
    if app.endpoint:
        raise CliError(f"{file}: with --endpoint the server reads videos from its own buckets folder: copy the file "
                       "into it and give s3://BUCKET/NAME")
    tmp = Path(tempfile.mkdtemp(prefix="faceledger-video-"))
    bucket = tmp / "cli"
    bucket.mkdir()
    target = bucket / path.name
    try:
        os.link(path.resolve(), target)
    except OSError:
        shutil.copyfile(path, target)
    app.buckets_dir = tmp
    return {"S3Object": {"Bucket": "cli", "Name": path.name}}, lambda: shutil.rmtree(tmp, ignore_errors=True)


def _run(app: App, start: str, get: str, member: str, file: str, params: dict[str, Any],
         get_params: dict[str, Any] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Start a job, show its progress (frames/s) until it ends, return every page of its results joined.

    ``progress``: the bar on standard error, None: when standard error is a terminal (with --json too: the JSON
    goes to standard output), as `faceledger index` has it."""
    video, cleanup = _video_arg(app, file)
    try:
        job_id = app.call(start, Video=video, **params)["JobId"]
        show = app.err.is_terminal if progress is None else progress
        began = time.monotonic()
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]}"),
                      TimeElapsedColumn(), console=app.err, disable=not show,
                      transient=app.err.is_terminal) as bar:  # elsewhere (a log) the last state stays
            task = bar.add_task(f"{start[6:].replace('_', ' ')} {Path(file).name}", total=None, rate="")
            while True:
                out = app.call(get, JobId=job_id, MaxResults=1, **(get_params or {}))
                if out["JobStatus"] != "IN_PROGRESS":
                    if out["JobStatus"] == "SUCCEEDED" and bar.tasks[0].total:
                        bar.update(task, completed=bar.tasks[0].total)
                    break
                frames, done, total = _progress(out)
                elapsed = max(1e-6, time.monotonic() - began)
                bar.update(task, total=total, completed=done, rate=f"{frames} frames, {frames / elapsed:.1f} frames/s")
                time.sleep(poll_interval(elapsed))
        result = app.pages(get, (member,), JobId=job_id, **(get_params or {}))
        result["_elapsed_s"] = time.monotonic() - began
        result["_headers"] = getattr(app, "last_headers", {})
        return result
    finally:
        cleanup()


def poll_interval(elapsed_s: float) -> float:
    """Seconds to wait before asking a job's state again, ``elapsed_s`` after it started: 0.5 s, growing to a
    tenth of the time elapsed and at most 5 s. Each Get* call is a ledger entry: a 10-minute job is polled
    about 150 times, not 1,200, and learns that it ended at most a tenth of its run time late (5 s at most)."""
    return min(5.0, max(0.5, elapsed_s / 10.0))


def _progress(out: dict[str, Any]) -> tuple[int, int | None, int | None]:
    """(frames analysed, ms reached, ms in all) from an IN_PROGRESS StatusMessage."""
    import re

    m = re.match(r"Analysed (\d+) frames, (\d+) of (\d+|\?) ms", out.get("StatusMessage", "") or "")
    if not m:
        return 0, None, None
    return int(m.group(1)), int(m.group(2)), None if m.group(3) == "?" else int(m.group(3))


def _finish(app: App, result: dict[str, Any]) -> bool:
    """Print the raw response (--json) or the job's status line; False when there is nothing more to show.

    With --json a FAILED job exits with status 1 here, as the tables do after their rows (docs/cli.md)."""
    headers = result.pop("_headers", {})
    elapsed = result.pop("_elapsed_s", 0.0)
    if app.as_json:
        app.print_json(result)
        if result["JobStatus"] == "FAILED":
            raise SystemExit(1)
        return False
    meta = result.get("VideoMetadata") or {}
    if isinstance(meta, list):
        meta = meta[0] if meta else {}
    if meta:
        app.out.print(f"video: {meta.get('FrameWidth')}x{meta.get('FrameHeight')}, {meta.get('FrameRate')} fps, "
                      f"{meta.get('DurationMillis', 0) / 1000:.1f} s, {meta.get('Codec')} in {meta.get('Format')}; "
                      f"analysed in {elapsed:.1f} s", markup=False)
    if result["JobStatus"] == "FAILED":
        app.err.print(f"job FAILED: {result.get('StatusMessage')}", markup=False)
    app.last_headers = headers
    return True


#: The option every video command has (as `faceledger index`).
progress_option = click.option("--progress/--no-progress", default=None,
                               help="Show a progress bar in frames/s on stderr (default: when stderr is a terminal).")


def _ms(value: int) -> str:
    return f"{value / 1000:.1f}s"


def _range(first: int, last: int) -> str:
    """A time range of the persons table ("2.8s-7.0s"; one sighting: "0.6s")."""
    return _ms(first) if first == last else f"{_ms(first)}-{_ms(last)}"


@client_command(video, "faces")
@click.argument("file")
@click.option("--attributes", type=click.Choice(["DEFAULT", "ALL"], case_sensitive=False), default="DEFAULT",
              show_default=True, help="FaceAttributes: ALL adds Gender and Smile where measured (docs/video.md)")
@progress_option
def video_faces(app: App, file: str, attributes: str, progress: bool | None) -> None:
    """The faces of a video (StartFaceDetection): each sampled frame's faces with their timestamps."""
    result = _run(app, "start_face_detection", "get_face_detection", "Faces", file,
                  {"FaceAttributes": attributes.upper()}, progress=progress)
    if not _finish(app, result):
        return
    every = attributes.upper() == "ALL"
    table = app.table("Timestamp", "BoundingBox", "Confidence", *(["Gender", "Smile"] if every else []))
    for f in result.get("Faces", []):
        table.add_row(_ms(f["Timestamp"]), fmt_box(f["Face"].get("BoundingBox")), fmt_pct(f["Face"].get("Confidence")),
                      *(fmt_gender_smile(f["Face"]) if every else []))
    if table.row_count:
        app.out.print(table)
    app.out.print(f"{len(result.get('Faces', []))} faces", markup=False)
    if result["JobStatus"] == "FAILED":
        raise SystemExit(1)


def time_ranges(stamps: list[int], gap: int = RANGE_GAP_MS) -> list[tuple[int, int]]:
    """Sorted timestamps (ms) as (first, last) ranges: a new range after a gap of more than ``gap`` ms."""
    ranges: list[tuple[int, int]] = []
    for t in sorted(stamps):
        if ranges and t - ranges[-1][1] <= gap:
            ranges[-1] = (ranges[-1][0], t)
        else:
            ranges.append((t, t))
    return ranges


#: A terminal narrower than this gets the persons table without its FaceId column (a UUID takes 36 columns and is
#: never cut) and one time range a line, so that Similarity and the time ranges stay readable; --json has it all.
WIDE_TABLE = 110


def persons_table(app: App, persons: dict[int, dict[str, Any]]) -> Any:
    """The table of ``video search``: one row per person ({Index: {"stamps": [ms], "matches": FaceMatches}})."""
    wide = not app.out.is_terminal or app.out.width >= WIDE_TABLE
    columns = ("Person", "ExternalImageId", "FaceId", "Similarity", "Seen")
    table = app.table(*(c for c in columns if wide or c != "FaceId"),
                      title=None if wide else "(FaceId: a wider terminal, or --json)")
    for index in sorted(persons):
        entry = persons[index]
        seen = (", " if wide else "\n").join(_range(a, b) for a, b in time_ranges(entry["stamps"]))
        best = entry["matches"][0] if entry["matches"] else None
        face = best["Face"] if best else {}
        row = [str(index), face.get("ExternalImageId", "(no match)" if not best else ""), face.get("FaceId", ""),
               fmt_pct(best["Similarity"]) if best else "", seen]
        table.add_row(*(row if wide else row[:2] + row[3:]))
    return table


@client_command(video, "search")
@click.argument("collection_id")
@click.argument("file")
@click.option("--threshold", type=click.FloatRange(0, 100), default=80.0, show_default=True,
              help="FaceMatchThreshold: lowest Similarity to report.")
@progress_option
def video_search(app: App, collection_id: str, file: str, threshold: float, progress: bool | None) -> None:
    """Who of COLLECTION_ID appears in a video, and when (StartFaceSearch): one row per person."""
    result = _run(app, "start_face_search", "get_face_search", "Persons", file,
                  {"CollectionId": collection_id, "FaceMatchThreshold": threshold}, {"SortBy": "INDEX"},
                  progress=progress)
    if not _finish(app, result):
        return
    persons: dict[int, dict[str, Any]] = {}
    for p in result.get("Persons", []):
        entry = persons.setdefault(p["Person"]["Index"], {"stamps": [], "matches": p.get("FaceMatches", [])})
        entry["stamps"].append(p["Timestamp"])
    h = getattr(app, "last_headers", {})
    if "x-faceledger-threshold-used" in h:
        app.out.print(f"threshold used {h['x-faceledger-threshold-used']}; expected false matches for the whole "
                      f"video {float(h.get('x-faceledger-expected-false-matches', 0)):.3g} (each person searched "
                      "once, with its best faces)", markup=False)
    if persons:
        app.out.print(persons_table(app, persons))
    matched = sum(1 for e in persons.values() if e["matches"])
    app.out.print(f"{len(persons)} persons, {matched} matched in {collection_id}", markup=False)
    if result["JobStatus"] == "FAILED":
        raise SystemExit(1)


@client_command(video, "segments")
@click.argument("file")
@click.option("--type", "types", type=click.Choice(["SHOT", "TECHNICAL_CUE"]), multiple=True,
              help="Segment types (default: both).")
@progress_option
def video_segments(app: App, file: str, types: tuple[str, ...], progress: bool | None) -> None:
    """Shots and black frames of a video (StartSegmentDetection)."""
    result = _run(app, "start_segment_detection", "get_segment_detection", "Segments", file,
                  {"SegmentTypes": list(types or ("SHOT", "TECHNICAL_CUE"))}, progress=progress)
    if not _finish(app, result):
        return
    if not result.get("Segments"):
        app.out.print("no segments", markup=False)
    table = app.table("Type", "Start", "End", "Frames", "Confidence")
    for s in result.get("Segments", []):
        kind = "SHOT" if s["Type"] == "SHOT" else s["TechnicalCueSegment"]["Type"]
        conf = (s.get("ShotSegment") or s.get("TechnicalCueSegment") or {}).get("Confidence")
        table.add_row(kind, f"{s['StartTimecodeSMPTE']} ({_ms(s['StartTimestampMillis'])})",
                      f"{s['EndTimecodeSMPTE']} ({_ms(s['EndTimestampMillis'])})",
                      f"{s['StartFrameNumber']}-{s['EndFrameNumber']}", fmt_pct(conf))
    if table.row_count:
        app.out.print(table)
    if result["JobStatus"] == "FAILED":
        raise SystemExit(1)
