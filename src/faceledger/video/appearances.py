"""Labels seen in sampled frames, as Rekognition Video's label and moderation results (pure computation).

Input: the analysed frames in time order, each ``{"t": ms, "found": [label dicts with "Name" and
"Confidence"]}``. A label's *continuous appearance* is a run of consecutive analysed frames that all have it;
each sampled frame stands for the time until the next analysed frame (the last one until the video's end), so
an appearance runs from its first frame's timestamp to the next analysed frame after its last one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SEGMENTS_BASE", "appearance_rows"]

#: Result positions of the SEGMENTS set start here (the TIMESTAMPS set takes 0, 1, ...), so one job keeps both
#: in the results table and each pages on its own.
SEGMENTS_BASE = 1 << 40


def appearance_rows(frames: list[dict[str, Any]], member: str, end_ms: int) -> list[tuple[int, int, dict]]:
    """(position by timestamp, position by name, body) for both result sets of a label job.

    TIMESTAMPS (positions from 0): one ``{"Timestamp", member: label}`` per label per analysed frame.
    SEGMENTS (positions from :data:`SEGMENTS_BASE`): one per continuous appearance, ``Timestamp`` its start,
    ``StartTimestampMillis``/``EndTimestampMillis``/``DurationMillis``, ``member`` the label as in its most
    confident frame. Timestamp order ties break by name, name order ties by timestamp. ``end_ms``: the video's
    duration (where the last frame's time runs out)."""
    times = [int(f["t"]) for f in frames]
    stamps: list[dict[str, Any]] = []
    runs: dict[str, dict[str, Any]] = {}  # name -> the open appearance
    segments: list[dict[str, Any]] = []
    for i, f in enumerate(frames):
        nxt = times[i + 1] if i + 1 < len(times) else max(end_ms, times[i])
        seen = set()
        for label in f["found"]:
            name = label["Name"]
            seen.add(name)
            stamps.append({"Timestamp": times[i], member: label})
            run = runs.get(name)
            if run is None:
                run = runs[name] = {"Timestamp": times[i], member: label, "StartTimestampMillis": times[i]}
            elif label["Confidence"] > run[member]["Confidence"]:
                run[member] = label
            run["EndTimestampMillis"] = nxt
        for name in [n for n in runs if n not in seen]:
            segments.append(runs.pop(name))
    segments.extend(runs.values())
    for s in segments:
        s["DurationMillis"] = s["EndTimestampMillis"] - s["StartTimestampMillis"]
    out: list[tuple[int, int, dict]] = []
    for base, rows in ((0, stamps), (SEGMENTS_BASE, segments)):
        by_time = sorted(range(len(rows)), key=lambda i: (rows[i]["Timestamp"], rows[i][member]["Name"]))
        by_name = sorted(range(len(rows)), key=lambda i: (rows[i][member]["Name"], rows[i]["Timestamp"]))
        name_pos = {i: p for p, i in enumerate(by_name)}
        out += [(base + p, base + name_pos[i], rows[i]) for p, i in enumerate(by_time)]
    return out
