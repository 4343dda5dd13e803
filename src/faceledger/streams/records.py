"""Rekognition's Kinesis face-search frame record, so that a consumer written for Rekognition parses ours unchanged.

One record per analysed frame (Amazon Rekognition Developer Guide, "Understanding the Kinesis face recognition JSON
frame record")::

    {"InputInformation": {"KinesisVideo": {"StreamArn": str, "FragmentNumber": str, "ProducerTimestamp": number,
                                           "ServerTimestamp": number, "FrameOffsetInSeconds": number}},
     "StreamProcessorInformation": {"Status": "RUNNING"},
     "FaceSearchResponse": [{"DetectedFace": {"BoundingBox": {...}, "Confidence": number, "Landmarks": [...],
                                              "Pose": {...}, "Quality": {...}},
                             "MatchedFaces": [{"Similarity": number,
                                               "Face": {"BoundingBox": {...}, "Confidence": number,
                                                        "ExternalImageId": str, "FaceId": str, "ImageId": str}}]}]}

faceledger reads no Kinesis video stream, so the KinesisVideo members are defined on the live source
(docs/streams.md): a *fragment* starts at each key frame of a connection (as a Kinesis fragment does), its
FragmentNumber is a decimal string that grows for the life of the processor and across reconnections,
ProducerTimestamp and ServerTimestamp are Unix times in seconds (float) at which the fragment's first frame was
received, and FrameOffsetInSeconds is the frame's time in the source's clock minus the fragment's first frame's.
"""

from __future__ import annotations

import json
from typing import Any

#: The members a MatchedFaces[].Face has in Rekognition's record (a subset of SearchFacesByImage's Face).
MATCHED_FACE_MEMBERS = ("BoundingBox", "Confidence", "ExternalImageId", "FaceId", "ImageId")


def frame_record(*, stream_arn: str, fragment_number: str, producer_timestamp: float, server_timestamp: float,
                 frame_offset_s: float, status: str, faces: list[dict[str, Any]]) -> dict[str, Any]:
    """The record of one analysed frame. ``faces``: ``{"DetectedFace": FaceDetail, "MatchedFaces": [{"Similarity",
    "Face"}]}`` per face detected (Face as SearchFacesByImage gives it: cut here to the record's members)."""
    return {
        "InputInformation": {"KinesisVideo": {
            "StreamArn": stream_arn,
            "FragmentNumber": fragment_number,
            "ProducerTimestamp": round(float(producer_timestamp), 3),
            "ServerTimestamp": round(float(server_timestamp), 3),
            "FrameOffsetInSeconds": round(float(frame_offset_s), 3),
        }},
        "StreamProcessorInformation": {"Status": status},
        "FaceSearchResponse": [
            {"DetectedFace": f["DetectedFace"],
             "MatchedFaces": [{"Similarity": float(m["Similarity"]),
                               "Face": {k: m["Face"][k] for k in MATCHED_FACE_MEMBERS if k in m["Face"]}}
                              for m in f.get("MatchedFaces", [])]}
            for f in faces
        ],
    }


def encode_record(record: dict[str, Any]) -> bytes:
    """A record's bytes: compact UTF-8 JSON, as a Kinesis data record's Data (no trailing newline)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
