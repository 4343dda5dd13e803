"""How far to trust a 1:N search: the expected number of false matches, and the size-aware threshold.

A 1:N search at Similarity ``t`` compares the probe with every face searched; each comparison with a
stranger is a false match with probability FMR(t) (the rate that Similarity stands for, see
docs/similarity.md). So a search over N faces expects ``FMR(t) x N`` false matches: 1e-4 x 25,000 = 2.5
at Rekognition's default of 80.

With a limit X (``faceledger serve --max-expected-false-matches X`` or the request's
``X-Faceledger-Max-Expected-False-Matches`` header) the threshold used is the lowest Similarity whose
expected false matches for the collection's current size are at most X, and never lower than the one
requested. It is reported with the expected count in the operation's side channel (``Invocation.meta``,
sent as the ``x-faceledger-threshold-used`` and ``x-faceledger-expected-false-matches`` headers and
recorded in the ledger), never in Rekognition's response body.

The margin rule (``faceledger serve --min-margin D``, default 1 decade; per request the
``X-Faceledger-Min-Margin`` header; 0 turns it off): a search answers only when its best identity is at
least ``10**D`` times less likely to be a chance match than the runner-up, a different identity (another
user, or a face that neither shares the best face's user nor matches it at Similarity
``SAME_IDENTITY_SIMILARITY``). When the two are closer than that the search is *ambiguous*: it returns no
match and says so (``x-faceledger-ambiguous: true``). In a 1:N search of strangers the best "match" is
often one of several look-alikes; a true match usually stands out (docs/evaluation.md, "Make 1:N search
safe": at Similarity 80 on the Congress-style split, 42 -> 13 false matches for 0.829 -> 0.801 found).
"""

from __future__ import annotations

import math

from ..vision.similarity import fmr_from_similarity, similarity_from_fmr
from .errors import InvalidParameterException

HEADER_EXPECTED = "x-faceledger-expected-false-matches"
HEADER_THRESHOLD = "x-faceledger-threshold-used"
HEADER_LIMIT = "x-faceledger-max-expected-false-matches"
HEADER_MARGIN = "x-faceledger-min-margin"
HEADER_AMBIGUOUS = "x-faceledger-ambiguous"
#: DetectModerationLabels: the moderation categories no model here computes (a missing label there means nothing)
HEADER_UNDETECTABLE = "x-faceledger-undetectable-categories"
#: the quality band of the compared pair when a face is outside the calibrated range (QualityFilter NONE):
#: "degraded-one" or "degraded-both", its Similarity from that band's table (docs/similarity.md)
HEADER_QUALITY_BAND = "x-faceledger-quality-band"
#: the ways the searched (or source) face is outside the calibrated range, comma-separated
HEADER_DEGRADATIONS = "x-faceledger-degradations"
META_HEADERS = {"ExpectedFalseMatches": HEADER_EXPECTED, "ThresholdUsed": HEADER_THRESHOLD,
                "Ambiguous": HEADER_AMBIGUOUS, "Undetectable": HEADER_UNDETECTABLE,
                "QualityBand": HEADER_QUALITY_BAND, "Degradations": HEADER_DEGRADATIONS}

#: Two faces without a user count as one identity for the margin rule when they match each other at
#: this Similarity (FMR 1e-4): several photos of one person are not "look-alikes" of each other.
SAME_IDENTITY_SIMILARITY = 80.0
#: How many faces beyond MaxFaces a search looks at to find the runner-up identity.
RUNNER_UP_CANDIDATES = 50


def size_aware_threshold(requested: float, faces: int, limit: float | None) -> float:
    """The lowest Similarity >= ``requested`` whose FMR x ``faces`` is at most ``limit`` (100 at most)."""
    if limit is None or faces <= 0:
        return requested
    needed = similarity_from_fmr(min(1.0, limit / faces)) if limit > 0 else 100.0
    return float(min(100.0, max(requested, needed)))


def limit_of(inv) -> float | None:
    limit = inv.context.max_expected_false_matches
    if limit is None:
        limit = inv.config.max_expected_false_matches
    if limit is not None and (not isinstance(limit, (int, float)) or math.isnan(limit) or limit < 0
                              or math.isinf(limit)):
        raise InvalidParameterException(
            "X-Faceledger-Max-Expected-False-Matches must be a finite number >= 0")
    return None if limit is None else float(limit)


def search_threshold(inv, requested: float, faces: int, probes: int = 1) -> float:
    """The threshold a 1:N search uses; records ThresholdUsed and ExpectedFalseMatches in ``inv.meta``."""
    limit = limit_of(inv)
    used = size_aware_threshold(requested, faces, None if limit is None else limit / max(probes, 1))
    expected = fmr_from_similarity(used) * faces * probes
    inv.meta.update(ThresholdUsed=round(used, 4), ThresholdRequested=requested, FacesSearched=faces,
                    ExpectedFalseMatches=expected)
    if probes != 1:
        inv.meta["Probes"] = probes
    if limit is not None:
        inv.meta["MaxExpectedFalseMatches"] = limit
    return used


def margin_of(inv) -> float:
    """The margin rule's margin in decades of FMR for this call (0: off)."""
    margin = inv.context.min_margin
    if margin is None:
        margin = inv.config.min_margin
    if margin is None:
        return 0.0
    if not isinstance(margin, (int, float)) or math.isnan(margin) or math.isinf(margin) or margin < 0:
        raise InvalidParameterException("X-Faceledger-Min-Margin must be a finite number >= 0 (decades of FMR)")
    return float(margin)


def reach(threshold: float, margin: float) -> float:
    """The lowest Similarity a runner-up can have and still make a match at ``threshold`` ambiguous."""
    if margin <= 0:
        return threshold
    # in decades, so that a huge margin cannot overflow: FMR x 10**margin, at most 1
    return float(similarity_from_fmr(10.0 ** min(0.0, math.log10(fmr_from_similarity(threshold)) + margin)))


def ambiguous(inv, best_distance: float, runner_up_distance: float | None, margin: float, scale=None) -> bool:
    """The margin rule's verdict for one search: True when the runner-up identity is within ``margin``
    decades of FMR of the best one (on ``scale``, default the call's). Records MinMargin, Ambiguous and
    MarginDecades in ``inv.meta``."""
    if margin <= 0:
        return False
    scale = inv.scale if scale is None else scale
    gap = None if runner_up_distance is None else float(
        scale.log10_fmr(runner_up_distance) - scale.log10_fmr(best_distance))
    verdict = gap is not None and gap < margin
    inv.meta["MinMargin"] = margin
    inv.meta["Ambiguous"] = verdict
    if gap is not None:
        inv.meta["MarginDecades"] = round(gap, 4)
    return verdict


def header_value(key: str, value) -> str:
    if isinstance(value, str):
        return value
    if key == "ExpectedFalseMatches":
        return f"{float(value):.6g}"
    if key == "Ambiguous":
        return "true" if value else "false"
    if key in ("QualityBand", "Degradations"):
        return str(value)
    return f"{float(value):g}"


def headers(meta: dict) -> dict[str, str]:
    """The x-faceledger-* response headers for an operation's side-channel metadata."""
    return {h: header_value(k, meta[k]) for k, h in META_HEADERS.items() if k in meta}
