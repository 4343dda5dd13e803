"""Rekognition operations faceledger answers with ``UnsupportedOperationException``, and why.

These are not "not yet written": each needs a model (or a hosted service) that no package this server may
install ships (see docs/models.md). Rather than an empty answer that a caller could read as "no celebrity",
"no protective equipment" or "live person", each call is refused at once, before its request is read, with
one error type for all of them (HTTP 400, ``UnsupportedOperationException``) whose message names the
operation and says why. The refusal is recorded in the ledger like any other answer. An operation registered
with :func:`faceledger.service.dispatch.operation` takes precedence over this table.
"""

from __future__ import annotations

_CELEBRITIES = ("no celebrity-recognition model (nor a gallery of public figures) ships in any package this "
                "server can install; faceledger recognizes only the faces you index in your own collections "
                "(SearchFacesByImage)")
_LIVENESS = ("Face Liveness needs Amazon's client-side challenge (the FaceLivenessDetector UI components) and its "
             "hosted liveness model; no open liveness model reachable here is more than a toy")
_CUSTOM = ("Custom Labels trains and hosts models on Amazon's infrastructure; faceledger trains no models and "
           "hosts only the fixed open models listed in docs/models.md")

_PATHING = ("people pathing (Rekognition's person tracking) was retired by Amazon Rekognition and is not offered "
            "here; use StartFaceDetection or StartFaceSearch, which track each person's face through the video")

#: operation -> why this server does not offer it.
UNSUPPORTED: dict[str, str] = {
    "DetectProtectiveEquipment": "no open model that detects protective equipment (face covers, hand covers, "
                                 "head covers) and the body parts they cover ships in any package this server "
                                 "can install",
    "RecognizeCelebrities": _CELEBRITIES,
    "GetCelebrityInfo": _CELEBRITIES,
    "StartCelebrityRecognition": _CELEBRITIES,
    "GetCelebrityRecognition": _CELEBRITIES,
    "CreateFaceLivenessSession": _LIVENESS,
    "GetFaceLivenessSessionResults": _LIVENESS,
    "StartPersonTracking": _PATHING,
    "GetPersonTracking": _PATHING,
    "DetectCustomLabels": _CUSTOM,
    **{op: _CUSTOM for op in (
        "CreateProject", "DeleteProject", "DescribeProjects", "CreateProjectVersion", "CopyProjectVersion",
        "DeleteProjectVersion", "DescribeProjectVersions", "StartProjectVersion", "StopProjectVersion",
        "CreateDataset", "DeleteDataset", "DescribeDataset", "DistributeDatasetEntries", "ListDatasetEntries",
        "ListDatasetLabels", "UpdateDatasetEntries", "PutProjectPolicy", "DeleteProjectPolicy",
        "ListProjectPolicies")},
}


def message(operation: str) -> str:
    """The refusal's message: the operation, that this server does not support it, and why."""
    return f"faceledger does not support {operation}: {UNSUPPORTED[operation]}"
