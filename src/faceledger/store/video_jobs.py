"""Stored-video jobs in the SQLite store: the job table, saved work and results (mixed into SQLiteStore).

A job is ``QUEUED`` (shown as IN_PROGRESS), ``IN_PROGRESS`` (claimed by a worker: ``lease_owner`` until
``lease_until``), ``SUCCEEDED`` or ``FAILED``. A worker saves its work at checkpoints: the job's
``progress`` (JSON) and work items (``video_job_items``: sightings and tracklets, tracklet vectors sealed
like face embeddings) in one transaction, so a process killed between checkpoints loses only the work
since the last one, and the next worker resumes from it. When the job ends, its results
(``video_job_results``, in both orders GetFaceSearch can page them) replace its work items in one
transaction. A lease that is not renewed (its worker died) lets another worker claim the job.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

SCHEMA = """
CREATE TABLE IF NOT EXISTS video_jobs (
    job_id TEXT PRIMARY KEY,
    api TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    principal TEXT NOT NULL,
    collection_id TEXT,
    request TEXT NOT NULL,
    video TEXT NOT NULL,
    video_sha256 TEXT,
    metadata TEXT,
    job_tag TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    expires_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    progress TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS video_jobs_by_status ON video_jobs(status, created_at);
CREATE TABLE IF NOT EXISTS video_job_items (
    job_id TEXT NOT NULL REFERENCES video_jobs(job_id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    vector BLOB,
    PRIMARY KEY (job_id, kind, seq)
);
CREATE TABLE IF NOT EXISTS video_job_results (
    job_id TEXT NOT NULL REFERENCES video_jobs(job_id) ON DELETE CASCADE,
    pos INTEGER NOT NULL,
    index_pos INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, pos)
);
CREATE INDEX IF NOT EXISTS video_job_results_by_index ON video_job_results(job_id, index_pos);
"""

#: Jobs that count as running or waiting (LimitExceededException past the configured number of them).
ACTIVE = ("QUEUED", "IN_PROGRESS")


@dataclass
class VideoJob:
    """One row of ``video_jobs`` (``request``, ``video``, ``metadata``, ``progress``: parsed JSON)."""

    job_id: str
    api: str
    status: str
    principal: str
    request: dict
    video: dict
    created_at: float
    updated_at: float
    status_message: str | None = None
    collection_id: str | None = None
    video_sha256: str | None = None
    metadata: dict | None = None
    job_tag: str | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    progress: dict | None = None


def _job(row: sqlite3.Row) -> VideoJob:
    return VideoJob(
        job_id=row["job_id"], api=row["api"], status=row["status"], principal=row["principal"],
        request=json.loads(row["request"]), video=json.loads(row["video"]), created_at=row["created_at"],
        updated_at=row["updated_at"], status_message=row["status_message"], collection_id=row["collection_id"],
        video_sha256=row["video_sha256"], metadata=json.loads(row["metadata"]) if row["metadata"] else None,
        job_tag=row["job_tag"], finished_at=row["finished_at"], expires_at=row["expires_at"],
        attempts=row["attempts"], lease_owner=row["lease_owner"], lease_until=row["lease_until"],
        progress=json.loads(row["progress"] or "{}"))


class VideoJobStore:
    """The video-job methods of :class:`faceledger.store.sqlite.SQLiteStore` (uses its connections,
    units of work and embedding cipher)."""

    def create_video_job(self, job: VideoJob) -> None:
        """Insert a new job (joins the calling unit of work: the Start call's ledger entry commits with it)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO video_jobs (job_id, api, status, status_message, principal, collection_id, request, "
                "video, video_sha256, metadata, job_tag, created_at, updated_at, progress) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.job_id, job.api, job.status, job.status_message, job.principal, job.collection_id,
                 json.dumps(job.request), json.dumps(job.video), job.video_sha256,
                 json.dumps(job.metadata) if job.metadata is not None else None, job.job_tag, job.created_at,
                 job.updated_at, json.dumps(job.progress or {})))

    def get_video_job(self, job_id: str) -> VideoJob | None:
        row = self._conn().execute("SELECT * FROM video_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def count_active_video_jobs(self) -> int:
        return int(self._conn().execute(
            f"SELECT COUNT(*) FROM video_jobs WHERE status IN ({','.join('?' * len(ACTIVE))})", ACTIVE
        ).fetchone()[0])

    def claim_video_job(self, owner: str, now: float, lease_s: float, max_attempts: int,
                        dead: Callable[[str], bool]) -> tuple[VideoJob | None, list[VideoJob]]:
        """Claim the oldest job that waits, or whose worker's lease ran out or whose worker is ``dead``:
        (the job claimed or None, jobs failed because they were claimed ``max_attempts`` times already: a
        video that kills its worker does not kill every restart)."""
        failed = []
        with self._write() as db:
            rows = db.execute("SELECT * FROM video_jobs WHERE status IN ('QUEUED', 'IN_PROGRESS') "
                              "ORDER BY created_at, job_id").fetchall()
            for row in rows:
                job = _job(row)
                if job.status == "IN_PROGRESS" and (job.lease_until or 0) >= now and (
                        job.lease_owner == owner or not dead(job.lease_owner or "")):
                    continue  # a live worker has it (its lease is renewed while it runs)
                if job.attempts >= max_attempts:
                    message = (f"The job was stopped {job.attempts} times before it could finish (its worker "
                               "was killed or the server stopped); it is not tried again")
                    db.execute("UPDATE video_jobs SET status = 'FAILED', status_message = ?, updated_at = ?, "
                               "finished_at = ?, lease_owner = NULL WHERE job_id = ?",
                               (message, now, now, job.job_id))
                    job.status, job.status_message = "FAILED", message
                    failed.append(job)
                    continue
                db.execute("UPDATE video_jobs SET status = 'IN_PROGRESS', lease_owner = ?, lease_until = ?, "
                           "attempts = attempts + 1, updated_at = ? WHERE job_id = ?",
                           (owner, now + lease_s, now, job.job_id))
                job.status, job.lease_owner, job.lease_until = "IN_PROGRESS", owner, now + lease_s
                job.attempts += 1
                return job, failed
        return None, failed

    def renew_video_leases(self, owner: str, job_ids: Sequence[str], until: float) -> None:
        if not job_ids:
            return
        with self._write() as db:
            db.executemany("UPDATE video_jobs SET lease_until = ? WHERE job_id = ? AND lease_owner = ? "
                           "AND status = 'IN_PROGRESS'", [(until, j, owner) for j in job_ids])

    def save_video_checkpoint(self, job_id: str, owner: str, progress: dict, now: float,
                              items: Iterable[tuple[str, Any, bytes | None]] = (),
                              metadata: dict | None = None) -> bool:
        """Save a worker's progress and new work items ((kind, JSON body, vector or None)) in one
        transaction; False (nothing saved) when the job is no longer this worker's."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM video_jobs WHERE job_id = ? AND lease_owner = ? AND status = 'IN_PROGRESS'",
                          (job_id, owner)).fetchone() is None:
                return False
            next_seq: dict[str, int] = {}
            for kind, body, vector in items:
                if kind not in next_seq:
                    next_seq[kind] = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM video_job_items "
                                                "WHERE job_id = ? AND kind = ?", (job_id, kind)).fetchone()[0]
                seq = next_seq[kind]
                next_seq[kind] += 1
                sealed = None if vector is None else self._seal(f"video:{job_id}:{kind}:{seq}", vector)
                db.execute("INSERT INTO video_job_items (job_id, kind, seq, body, vector) VALUES (?, ?, ?, ?, ?)",
                           (job_id, kind, seq, json.dumps(body), sealed))
            db.execute("UPDATE video_jobs SET progress = ?, updated_at = ?, metadata = COALESCE(?, metadata) "
                       "WHERE job_id = ?",
                       (json.dumps(progress), now, json.dumps(metadata) if metadata is not None else None, job_id))
        return True

    def video_job_items(self, job_id: str, kind: str) -> list[tuple[Any, bytes | None]]:
        """The saved work items of one kind, in order: (body, vector or None)."""
        rows = self._conn().execute("SELECT seq, body, vector FROM video_job_items WHERE job_id = ? AND kind = ? "
                                    "ORDER BY seq", (job_id, kind)).fetchall()
        return [(json.loads(r["body"]), None if r["vector"] is None else
                 self._open(f"video:{job_id}:{kind}:{r['seq']}", r["vector"])) for r in rows]

    def finish_video_job(self, job_id: str, owner: str | None, status: str, message: str | None, now: float,
                         expires_at: float, results: Iterable[tuple[int, int, Any]] = (),
                         metadata: dict | None = None, progress: dict | None = None) -> bool:
        """End a job: its results ((position by timestamp, position by index, JSON body)) replace its work
        items, in one transaction; False when the job is not ``owner``'s (None: whoever's) any more."""
        with self._write() as db:
            row = db.execute("SELECT lease_owner, status FROM video_jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None or row["status"] in ("SUCCEEDED", "FAILED") or (
                    owner is not None and row["lease_owner"] != owner):
                return False
            db.execute("DELETE FROM video_job_items WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM video_job_results WHERE job_id = ?", (job_id,))
            db.executemany("INSERT INTO video_job_results (job_id, pos, index_pos, body) VALUES (?, ?, ?, ?)",
                           [(job_id, pos, index_pos, json.dumps(body)) for pos, index_pos, body in results])
            db.execute("UPDATE video_jobs SET status = ?, status_message = ?, updated_at = ?, finished_at = ?, "
                       "expires_at = ?, lease_owner = NULL, lease_until = NULL, metadata = COALESCE(?, metadata), "
                       "progress = COALESCE(?, progress) WHERE job_id = ?",
                       (status, message, now, now, expires_at, json.dumps(metadata) if metadata is not None else None,
                        json.dumps(progress) if progress is not None else None, job_id))
        return True

    def video_job_results(self, job_id: str, after: int, limit: int, by_index: bool = False,
                          before: int | None = None) -> tuple[list, int | None]:
        """(result bodies after position ``after`` (-1: from the start), the position to continue after, or
        None when no more remain) in timestamp order, or person-index order (``by_index``); only positions
        below ``before`` when given (a job that keeps two result sets, as label jobs' TIMESTAMPS and SEGMENTS)."""
        column = "index_pos" if by_index else "pos"
        rows = self._conn().execute(
            f"SELECT {column} AS p, body FROM video_job_results WHERE job_id = ? AND {column} > ? AND {column} < ? "
            f"ORDER BY {column} LIMIT ?", (job_id, after, (1 << 62) if before is None else before,
                                           limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [json.loads(r["body"]) for r in rows], (rows[-1]["p"] if more and rows else None)

    def delete_expired_video_jobs(self, now: float) -> int:
        """Delete finished jobs whose results are past their retention; how many."""
        with self._write() as db:
            return db.execute("DELETE FROM video_jobs WHERE expires_at IS NOT NULL AND expires_at < ?",
                              (now,)).rowcount
