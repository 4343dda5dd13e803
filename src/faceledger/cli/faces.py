"""``faceledger index``, ``search``, ``compare``, ``detect`` and ``faces``."""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import ClientError

from ..external_ids import describe as describe_external_id
from ..external_ids import external_image_id
from .bulk import iter_image_files
from .common import (
    App,
    CliError,
    _reasons,
    client_command,
    fmt_box,
    fmt_gender_smile,
    fmt_pct,
    image_path,
    image_size,
    read_image,
)
from .main import main

__all__ = ["external_image_id", "image_files", "refuse_colliding_ids"]


def refuse_colliding_ids(clashes: dict[str, list[str]]) -> None:
    """CliError, before anything is indexed, when two files would get the same ExternalImageId (the same
    relative name under two folders given, or names equal in Unicode NFC; ``clashes``: id -> files, from
    :func:`faceledger.cli.bulk.survey`): `erase --external-image-id` would then erase both."""
    if clashes:
        lines = [f"  {ext_id}: " + ", ".join(str(p) for p in paths) for ext_id, paths in list(clashes.items())[:10]]
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        raise CliError(
            f"{sum(len(p) for p in clashes.values())} files would share {len(clashes)} ExternalImageId"
            f"{'s' if len(clashes) > 1 else ''} (an id is the path relative to the folder given), and "
            "`faceledger erase` would erase them together; nothing was indexed:\n" + "\n".join(lines) + more +
            "\nGive their common parent folder instead (its sub-folder names become part of the ids), or "
            "rename the files.")


def image_files(paths: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(file, relative name) for every image under ``paths``: folders recursively (JPEG and PNG by
    extension, hidden files and folders skipped, sorted), files as given; each file once. A list, for a
    few files; `index` streams them (:func:`faceledger.cli.bulk.iter_image_files`)."""
    return [(Path(f.path), f.relative) for f in iter_image_files(paths)]


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


#: Failed images the summary lists again (all are printed as they fail, and counted).
FAILED_LISTED = 1000


@client_command(main, "index")
@click.argument("collection_id")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--max-faces", type=click.IntRange(min=1), default=None, help="Index at most N faces per image.")
@click.option("--quality-filter", type=click.Choice(["NONE", "AUTO", "LOW", "MEDIUM", "HIGH"]), default=None,
              help="Rekognition's QualityFilter (service default: AUTO).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Images indexed at once (default: the CPUs available, or $FACELEDGER_WORKERS); locally, "
                   "worker processes from 200 images on.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Skip the images an earlier run indexed into this collection with the same options "
                   "(journal in the data folder; local data folder only).")
def index(app: App, collection_id: str, paths: tuple[Path, ...], max_faces: int | None,
          quality_filter: str | None, progress: bool | None, workers: int | None, resume: bool) -> None:
    """Index the faces of images (files, or folders recursively) into COLLECTION_ID.

    Each image's ExternalImageId is its path relative to the folder given (a file given directly:
    its name), encoded to fit Rekognition's pattern: '/' as ':', letters, digits and _ . - as they
    are, any other byte as '::' and two hex digits (docs/cli.md). Two files that would get the same
    id stop the run before anything is indexed. An interrupted run (Ctrl-C, kill) started again skips
    what it indexed and never stores a face twice.
    """
    import json
    import time

    from .bulk import Journal, ProcessPool, bounded_workers, index_file, json_path, processes_from, shown_path, survey

    try:
        found = survey(paths)  # counts, and refuses two files with one id, before anything is indexed
    except KeyboardInterrupt:  # as Ctrl-C while indexing: a message and 130, not click's "Aborted!" and 1
        raise CliError("interrupted while counting the images: nothing was indexed", 130) from None
    refuse_colliding_ids(found.clashes)
    for folder, why in found.unreadable:  # their images are not indexed: said, never silently left out
        app.err.print(f"warning: {folder}: cannot read this folder ({why}): its images are not indexed",
                      markup=False)
    if found.unreadable_count > len(found.unreadable):
        app.err.print(f"warning: and {found.unreadable_count - len(found.unreadable)} more folders that cannot "
                      "be read", markup=False)
    if not found.total:
        app.err.print("warning: no JPEG or PNG images in " + ", ".join(map(str, paths)), markup=False)
    described = app.call("describe_collection", CollectionId=collection_id)  # a missing collection fails first
    params: dict[str, Any] = {"CollectionId": collection_id}
    if max_faces is not None:
        params["MaxFaces"] = max_faces
    if quality_filter is not None:
        params["QualityFilter"] = quality_filter
    if workers is None:
        from ..vision.engine import default_workers

        workers = default_workers()
    journal = None
    if resume and not app.endpoint:
        created = described.get("CreationTimestamp")
        incarnation = f"{described.get('CollectionARN')}@{created.isoformat() if created else ''}"
        options = json.dumps({"MaxFaces": max_faces, "QualityFilter": quality_filter or "AUTO"}, sort_keys=True)
        journal = Journal(app.data_dir / "index-journal.db", incarnation, options,
                          warn=lambda text: app.err.print(text, markup=False))
    processes = not app.endpoint and workers > 1 and found.total >= processes_from()
    workers = bounded_workers(workers, processes, app.err)

    results: list[dict[str, Any]] = []  # each image's entry, for --json only (millions of images: not kept)
    seen = 0  # images accounted for
    indexed = skipped = skipped_faces = 0
    unindexed: Counter[str] = Counter()
    unindexed_faces = 0
    no_face_images = 0
    failed: list[tuple[str, str]] = []  # the first FAILED_LISTED, for the summary (each is printed as it comes)
    failed_count = 0
    failed_by: Counter[str] = Counter()
    show = app.err.is_terminal if progress is None else progress

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                   _faces_column(), TimeElapsedColumn(), console=app.err, disable=not show, transient=False)
    fatal: BaseException | None = None
    pool: Any = None

    def submit(path: str, ext_id: str) -> Future:
        nonlocal pool
        if pool is None:  # started at the first image to index: a run with nothing left starts nothing
            if processes:
                pool = ProcessPool(workers, (app.data_dir, app.buckets_dir, None, None, False, app.purpose,
                                             app.case))
            else:
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceledger-index")
        request = {**params, "ExternalImageId": ext_id}
        if processes:
            return pool.submit(path, request)
        return pool.submit(index_file, path, request, app.client)

    def keep(entry: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if app.as_json:
            results.append(entry)

    def record(f: Any, entry: dict[str, Any], future: Future | None, done: int | None) -> bool:
        """Account for one image's outcome; False for an error that must stop the run."""
        nonlocal indexed, unindexed_faces, no_face_images, fatal, skipped, skipped_faces, failed_count
        if future is None:  # indexed by an earlier run
            skipped += 1
            skipped_faces += done or 0
            entry["Skipped"] = True
            keep(entry)
            return True
        try:
            outcome = future.result()
        except BrokenProcessPool as exc:  # a worker process died (killed, out of memory, failed to start)
            fatal = fatal or CliError(f"a worker process stopped ({exc}): the same command goes on where this "
                                      "one stopped")
            return False
        if outcome[0] == "fatal":
            fatal = fatal or (outcome[3] if len(outcome) > 3 and outcome[3] is not None else ClientError(
                {"Error": {"Code": outcome[1], "Message": outcome[2]}}, "IndexFaces"))
            return False
        if outcome[0] == "error":
            code, message = outcome[1], outcome[2]
            entry["Error"] = {"Code": code, "Message": message}
            if code != "FileError":
                message = f"{code}: {message}"
            shown = shown_path(str(f.path))
            failed_count += 1
            if len(failed) < FAILED_LISTED:  # a million broken files: a million lines already, not kept twice
                failed.append((shown, message))
            failed_by[code] += 1
            app.err.print(f"error: {shown}: {message}", markup=False)
        else:
            r = outcome[1]
            entry.update(r)
            faces = len(r.get("FaceRecords", []))
            indexed += faces
            for face in r.get("UnindexedFaces", []):
                unindexed_faces += 1
                unindexed.update(face.get("Reasons", []))
            if not r.get("FaceRecords") and not r.get("UnindexedFaces"):
                no_face_images += 1
            if journal is not None:
                journal.record(entry["ExternalImageId"], f, faces)
        keep(entry)
        return True

    # Images run `workers` at a time, at most 2 x workers in flight (a bounded queue over a streamed walk);
    # results are taken in file order, so output and summary read the same whatever the workers.
    pending: deque[tuple[Any, dict[str, Any], Future | None, int | None]] = deque()
    todo = iter_image_files(paths, found.repeated)
    interrupted = False
    start = time.monotonic()
    try:
        with bar:
            task = bar.add_task("index", total=found.total, faces=0)
            try:
                while True:
                    while fatal is None and len(pending) < 2 * workers:
                        f = next(todo, None)
                        if f is None:
                            break
                        ext_id = external_image_id(f.relative)
                        entry = {"Path": json_path(str(f.path)), "ExternalImageId": ext_id}
                        done = journal.done(ext_id, f) if journal is not None else None
                        pending.append((f, entry, None if done is not None else submit(f.path, ext_id), done))
                    if not pending:
                        break
                    f, entry, future, done = pending[0]  # taken off once counted: Ctrl-C while it is awaited
                    if fatal is not None and future is not None and future.cancel():
                        pending.popleft()
                        continue  # never started: after a fatal error, start nothing new
                    counted = record(f, entry, future, done)
                    pending.popleft()
                    if counted:  # images running when a fatal error came are reported
                        bar.update(task, advance=1, faces=indexed)
            except KeyboardInterrupt:
                interrupted = True  # start nothing new; what is running finishes and is counted
                for f, entry, future, done in pending:
                    if future is None or not future.cancel():
                        try:
                            record(f, entry, future, done)
                        except Exception:
                            pass
    finally:
        if pool is not None:
            if isinstance(pool, ProcessPool):
                pool.close(cancel=True)
            else:
                pool.shutdown(wait=True, cancel_futures=True)
        if journal is not None:
            journal.close()
    seconds = time.monotonic() - start

    summary = {
        "Images": found.total,
        "ImagesProcessed": seen - failed_count - skipped,
        "ImagesSkipped": skipped,
        "ImagesFailed": failed_count,
        "ImagesFailedByReason": dict(sorted(failed_by.items())),
        "ImagesWithoutFaces": no_face_images,
        "FacesIndexed": indexed,
        "FacesSkipped": skipped_faces,
        "FacesNotIndexed": unindexed_faces,
        "FacesNotIndexedByReason": dict(sorted(unindexed.items())),
    }
    if interrupted:
        summary["Interrupted"] = True
    run = {  # how this run went (the summary: what it did, the same whatever the workers)
        "Seconds": round(seconds, 3),
        "ImagesPerSecond": round((seen - skipped) / seconds, 2) if seconds > 0 else 0.0,
        "FacesPerSecond": round(indexed / seconds, 2) if seconds > 0 else 0.0,
        "Workers": workers,
        "WorkerProcesses": processes,
    }
    if app.as_json:
        app.print_json({"CollectionId": collection_id, "Images": results, "Summary": summary, "Run": run})
    else:
        out = app.out
        out.print(f"collection {collection_id}: {summary['ImagesProcessed']} of {found.total} images processed")
        out.print(f"  faces indexed:      {indexed}")
        reasons = ", ".join(f"{k} {v}" for k, v in summary["FacesNotIndexedByReason"].items())
        out.print(f"  faces not indexed:  {unindexed_faces}" + (f" ({reasons})" if reasons else ""),
                  markup=False)
        out.print(f"  images, no face:    {no_face_images}")
        if skipped:
            out.print(f"  images skipped:     {skipped} (indexed by an earlier run: {skipped_faces} faces)")
        errors = ", ".join(f"{k} {v}" for k, v in summary["ImagesFailedByReason"].items())
        out.print(f"  images with errors: {failed_count}" + (f" ({errors})" if errors else ""), markup=False)
        for path, message in failed:
            out.print(f"    {path}: {message}", markup=False)
        if failed_count > len(failed):
            out.print(f"    and {failed_count - len(failed)} more (their error lines above)", markup=False)
        kind = "worker processes" if processes else "threads"
        out.print(f"  speed:              {run['FacesPerSecond']:.1f} faces/s "
                  f"({seen - skipped} images in {seconds:.1f} s, {workers} {kind})")
    if fatal is not None:
        raise fatal
    if interrupted:
        raise CliError(f"interrupted after {seen} of {found.total} images: the same command goes on "
                       "where this one stopped", 130)
    if failed_count:
        raise CliError(f"{failed_count} of {found.total} images failed", 1)


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
@click.option("--attributes", type=click.Choice(["DEFAULT", "ALL"], case_sensitive=False), default="DEFAULT",
              show_default=True, help="ALL adds Gender and Smile where measured (docs/analysis.md)")
def detect(app: App, image: Path, attributes: str) -> None:
    """Detect the faces in IMAGE: box, confidence, pose and quality (--json adds landmarks)."""
    app.stateless = True
    r = app.call("detect_faces", Image=read_image(image), Attributes=[attributes.upper()])
    if app.as_json:
        return app.print_json(r)
    faces = r.get("FaceDetails", [])
    app.out.print(f"{len(faces)} face{'s' if len(faces) != 1 else ''} in {image}", markup=False)
    if not faces:
        return
    size = image_size(image)
    gender = attributes.upper() == "ALL"
    table = app.table("#", "Box", "Confidence", "Roll", "Yaw", "Pitch", "Brightness", "Sharpness",
                      *(["Gender", "Smile"] if gender else []))
    for i, face in enumerate(faces, 1):
        pose, quality = face.get("Pose", {}), face.get("Quality", {})
        table.add_row(str(i), fmt_box(face.get("BoundingBox"), size), fmt_pct(face.get("Confidence")),
                      *(f"{pose[k]:+.0f}" if k in pose else "" for k in ("Roll", "Yaw", "Pitch")),
                      *(f"{quality[k]:.0f}" if k in quality else "" for k in ("Brightness", "Sharpness")),
                      *(fmt_gender_smile(face) if gender else []))
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
    # ids `faceledger index` escaped (non-ASCII names, spaces): the file they name, decoded
    with_files = any("::" in face.get("ExternalImageId", "") for face in found)
    table = app.table("FaceId", "ExternalImageId", *(["File"] if with_files else []),
                      *(["UserId"] if with_users else []))
    for face in found:
        ext_id = face.get("ExternalImageId", "")
        table.add_row(face.get("FaceId", ""), ext_id, *([describe_external_id(ext_id)] if with_files else []),
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


