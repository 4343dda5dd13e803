"""Images whose cost could grow faster than what was sent (issue 9, point 7).

Every image is built here with Pillow/numpy.  The vision tests check the decoder's working image and
the detectors' windows directly; the server tests send each hostile shape through boto3 to a live
`faceledger serve` of each engine, check the AWS answer, and after every request check the serving
process's peak RSS (VmHWM in /proc/<pid>/status) against a generous bound.  No timing assertions:
bench/hostile_images.py prints the figures.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from conftest import Server, image_bytes, shared_data

from faceledger.vision import ImageTooSmall, InvalidImageFormat, decode_image
from faceledger.vision.engine import Detection
from faceledger.vision.image import (
    MAX_JPEG_SCANS,
    WORKING_PIXELS,
    WORKING_SIDE,
    jpeg_scan_count,
    jpeg_segments,
    working_size,
)

#: The serving process's peak RSS must stay under this (MiB), whatever was sent.  Unfixed, one 102-byte
#: 20000x1 PNG took it to 1.8 GB and a 16-bit 6000x6000 PNG to 1.5 GB (bench/hostile_images.py).
PEAK_RSS_MIB = 1024


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def many_scans(copies: int) -> bytes:
    """A 6000x6000 progressive JPEG whose last scan (59 bytes) is repeated ``copies`` times: libjpeg
    decodes every scan over every block (1,000 copies: 100 s of one core, unguarded)."""
    data = encode(Image.new("L", (6000, 6000), 128), "JPEG", progressive=True, quality=90)
    _, start, end = [s for s in jpeg_segments(data) if s[0] == 0xDA][-1]
    return data[:-2] + data[start:end] * copies + data[-2:]


def astronaut() -> Image.Image:
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.astronaut())


def exif(orientation: int, filler: int = 0) -> bytes:
    """An EXIF block with an Orientation tag and ``filler`` bytes of XMP (tag 0x02BC) that begin with an SOS
    marker's two bytes (inside a segment: not a scan)."""
    e = Image.Exif()
    e[0x0112] = orientation
    if filler:
        e[0x02BC] = b"\xff\xda" + b"x" * (filler - 2)
    return e.tobytes()


# ------------------------------------------------------------------------------------------- decoding


def test_working_size_bounds_pixels_and_side_keeps_aspect():
    assert working_size(250, 250) == (250, 250)
    assert working_size(1920, 1080) == (1920, 1080)
    for w, h in [(4000, 3000), (6000, 6000), (60000, 600), (450000, 80), (36_000_000, 1), (1, 36_000_000)]:
        ww, hh = working_size(w, h)
        assert ww * hh <= WORKING_PIXELS and max(ww, hh) <= WORKING_SIDE and min(ww, hh) >= 1
        if min(ww, hh) > 50:
            assert abs(ww / hh - w / h) / (w / h) < 0.02
    assert working_size(60000, 600) == (4096, 40)
    assert working_size(5000, 4000, None, None) == (5000, 4000)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "I;16", "P+tRNS", "L+tRNS", "1"])
def test_large_png_decodes_to_the_working_image_pillow_would_make(mode):
    """A 36 Mpx PNG of each mode, converted tile by tile and box-reduced, is pixel for pixel what converting
    the whole image and resizing it with Pillow (reducing_gap 2) gives."""
    base = astronaut().resize((8000, 4500), Image.BICUBIC)
    ramp = np.tile(np.linspace(0, 255, 8000).astype(np.uint8), (4500, 1))
    options: dict[str, Any] = {}
    if mode == "RGBA":
        img = Image.fromarray(np.dstack([np.asarray(base), ramp]), "RGBA")
    elif mode == "LA":
        img = Image.merge("LA", (base.convert("L"), Image.fromarray(ramp)))
    elif mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    elif mode.endswith("+tRNS"):
        img = base.convert(mode[0])
        options["transparency"] = 0
    else:
        img = base.convert(mode)
    data = encode(img, "PNG", **options)
    decoded = decode_image(data)
    assert (decoded.source_width, decoded.source_height) == (8000, 4500)
    assert (decoded.width, decoded.height) == working_size(8000, 4500) == (1920, 1080)
    assert decoded.pixels.shape == (1080, 1920, 3) and decoded.pixels.dtype == np.uint8

    ref = Image.open(io.BytesIO(data))
    if ref.mode == "I;16":  # 16-bit grey scaled to 8 bits, not clipped
        ref = Image.fromarray(np.rint(np.asarray(ref) / 257.0).astype(np.uint8))
    if ref.mode in ("RGBA", "LA") or "transparency" in ref.info:  # alpha composited over white
        ref = Image.alpha_composite(Image.new("RGBA", ref.size, (255, 255, 255, 255)), ref.convert("RGBA"))
    expected = np.asarray(ref.convert("RGB").resize((1920, 1080), Image.BILINEAR, reducing_gap=2.0))
    assert np.array_equal(decoded.pixels, expected)


def test_large_jpeg_is_decoded_at_reduced_scale_and_oriented():
    """A 6000x4000 JPEG stored sideways with EXIF Orientation 6: DCT-scaled decode, then upright."""
    upright = astronaut().resize((4000, 6000), Image.BICUBIC)
    upright.paste((255, 0, 0), (0, 0, 400, 400))  # a red mark at the upright image's top left
    data = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif(6))
    decoded = decode_image(data)
    assert (decoded.source_width, decoded.source_height) == (4000, 6000)
    assert (decoded.width, decoded.height) == working_size(4000, 6000)
    corner = decoded.pixels[: decoded.height // 20, : decoded.width // 20].reshape(-1, 3).mean(axis=0)
    assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60
    reference = np.asarray(upright.resize((decoded.width, decoded.height), Image.BILINEAR), dtype=float)
    assert np.abs(decoded.pixels - reference).mean() < 3


def test_refused_from_the_header_before_decoding():
    with pytest.raises(ImageTooSmall, match="20000x1"):
        decode_image(encode(Image.new("L", (20000, 1)), "PNG"), min_side=80)
    with pytest.raises(ImageTooSmall, match="79x4000"):
        decode_image(encode(Image.new("RGB", (79, 4000)), "JPEG"), min_side=80)
    assert decode_image(encode(Image.new("RGB", (80, 80)), "JPEG"), min_side=80).pixels.shape == (80, 80, 3)
    # without a minimum, the 36,000,000x1 PNG decodes to a 4096x1 working image
    thin = decode_image(encode(Image.new("1", (36_000_000, 1), 1), "PNG", optimize=True))
    assert thin.pixels.shape == (1, 4096, 3) and (thin.pixels == 255).all()


def test_jpeg_scans_counted_from_the_marker_structure():
    face = astronaut()
    assert jpeg_scan_count(encode(face, "JPEG")) == 1
    progressive = jpeg_scan_count(encode(face, "JPEG", progressive=True))
    assert 2 < progressive <= 20
    # SOS bytes inside an EXIF segment are not a scan
    assert jpeg_scan_count(encode(face, "JPEG", exif=exif(1, filler=60_000))) == 1
    hostile = many_scans(MAX_JPEG_SCANS)
    assert jpeg_scan_count(hostile) > MAX_JPEG_SCANS
    with pytest.raises(InvalidImageFormat, match="scans"):
        decode_image(hostile)
    assert decode_image(many_scans(10)).source_width == 6000  # a few extra scans: decoded


def test_only_the_first_frame_of_an_animated_png_or_mpo():
    red, blue = Image.new("RGB", (300, 200), (255, 0, 0)), Image.new("RGB", (300, 200), (0, 0, 255))
    for fmt in ("PNG", "MPO"):
        data = encode(red, fmt, save_all=True, append_images=[blue, blue])
        assert Image.open(io.BytesIO(data)).n_frames == 3
        decoded = decode_image(data)
        assert decoded.format == ("PNG" if fmt == "PNG" else "JPEG")
        assert decoded.pixels.reshape(-1, 3).mean(axis=0)[0] > 240


def test_huge_exif_is_read_for_its_orientation():
    face = astronaut().crop((0, 0, 512, 300))
    stored = face.transpose(Image.Transpose.ROTATE_90)  # Orientation 6: rotate 90 clockwise to view
    for data in (encode(stored, "JPEG", exif=exif(6, filler=64_000)),  # the most one APP1 segment holds
                 encode(stored, "PNG", exif=exif(6, filler=4_000_000))):  # a 4 MB eXIf chunk
        decoded = decode_image(data)
        assert (decoded.width, decoded.height) == (512, 300)
        assert np.abs(decoded.pixels.astype(float) - np.asarray(face, dtype=float)).mean() < 4


# ------------------------------------------------------------------------------------------- detection


def _numpy_peak_mib(fn: Callable[[], Any]) -> float:
    """Peak of numpy's (traced) allocations while ``fn`` runs, MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_detector_windows_cost_what_the_image_holds():
    """The whole-image window of a 20000x1 image, and the HOG check of a box as wide as the image, used to
    be squares of the image's longest side (20000x20000x3, 40000x40000x3)."""
    from faceledger.vision.dlib_models import HogVerifiedDetector
    from faceledger.vision.engine import blazeface_detector
    from faceledger.vision.tfjs_models import _crop_square

    thin = np.full((1, 20000, 3), 128, np.uint8)
    assert _numpy_peak_mib(lambda: _crop_square(thin, 0, 0, 20000, 256)) < 5
    window = _crop_square(np.full((300, 600, 3), 200, np.uint8), 0, 0, 600, 256)
    assert (window[:128] == 200).all() and (window[128:] == 0).all()  # letterboxed: image on top, black below

    detector = blazeface_detector()
    assert isinstance(detector, HogVerifiedDetector)
    wide = Detection(left=0.0, top=0.0, right=20000.0, bottom=1.0, score=1.0, confidence=99.0)
    assert _numpy_peak_mib(lambda: detector.hog_score(thin, wide)) < 5
    assert _numpy_peak_mib(lambda: detector.detect(np.full((3, 60000, 3), 90, np.uint8))) < 50


# ------------------------------------------------------------------------------------------- the server


def peak_rss_mib(server: Server) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A fresh server of each engine: their peak RSS is this module's alone."""
    root = tmp_path_factory.mktemp("hostile")
    started = {}
    try:
        for engine in ("onnx", "dlib"):
            started[engine] = Server(root / engine / "data", root / engine / "buckets", ["--engine", engine])
        yield started
    finally:
        for srv in started.values():
            srv.stop()


@pytest.fixture(scope="module")
def face() -> bytes:
    return image_bytes(shared_data("lfw_dev", "Aaron_Peirsol", "Aaron_Peirsol_0001.jpg"))


@pytest.fixture(scope="module")
def collections(servers, face) -> dict[str, str]:
    """Per engine, a collection holding one face and one user."""
    out = {}
    for engine, srv in servers.items():
        client, cid = srv.client(), f"hostile-{uuid.uuid4().hex[:8]}"
        client.create_collection(CollectionId=cid)
        client.index_faces(CollectionId=cid, Image={"Bytes": face})
        client.create_user(CollectionId=cid, UserId="someone")
        out[engine] = cid
    return out


def as_image(srv: Server, data: bytes) -> dict:
    """Bytes up to 5 MB, else an S3Object in the server's buckets folder (15 MB limit)."""
    if len(data) <= 5 * 1024 * 1024:
        return {"Bytes": data}
    bucket = srv.buckets_dir / "hostile"
    bucket.mkdir(exist_ok=True)
    name = f"{uuid.uuid4().hex}.img"
    (bucket / name).write_bytes(data)
    return {"S3Object": {"Bucket": "hostile", "Name": name}}


OPERATIONS: dict[str, Callable[[Any, str, dict, bytes], dict]] = {
    "DetectFaces": lambda c, cid, img, face: c.detect_faces(Image=img),
    "IndexFaces": lambda c, cid, img, face: c.index_faces(CollectionId=cid, Image=img),
    "SearchFacesByImage": lambda c, cid, img, face: c.search_faces_by_image(CollectionId=cid, Image=img),
    "SearchUsersByImage": lambda c, cid, img, face: c.search_users_by_image(CollectionId=cid, Image=img),
    "CompareFaces(target)": lambda c, cid, img, face: c.compare_faces(SourceImage={"Bytes": face}, TargetImage=img),
    "CompareFaces(source)": lambda c, cid, img, face: c.compare_faces(SourceImage=img, TargetImage={"Bytes": face}),
}
#: What each operation answers for a valid image without a face.
NO_FACE = {
    "DetectFaces": lambda r: r["FaceDetails"] == [],
    "IndexFaces": lambda r: r["FaceRecords"] == [] and r["UnindexedFaces"] == [],
    "SearchFacesByImage": "InvalidParameterException",
    "SearchUsersByImage": "InvalidParameterException",
    "CompareFaces(target)": lambda r: r["FaceMatches"] == [] and r["UnmatchedFaces"] == [],
    "CompareFaces(source)": "InvalidParameterException",
}


def answer(srv: Server, cid: str, face: bytes, operation: str, data: bytes) -> dict | str:
    """The response, or the error code (whose HTTP status must be 400); then the peak RSS is checked."""
    try:
        result: dict | str = OPERATIONS[operation](srv.client(), cid, as_image(srv, data), face)
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400, exc.response
        result = exc.response["Error"]["Code"]
    peak = peak_rss_mib(srv)
    assert peak < PEAK_RSS_MIB, f"{operation}: the server's peak RSS reached {peak:.0f} MiB"
    return result


def assert_no_face(operation: str, result: dict | str) -> None:
    expected = NO_FACE[operation]
    if isinstance(expected, str):
        assert result == expected, result
    else:
        assert isinstance(result, dict) and expected(result), result


REFUSED = {
    "20000x1 PNG": (lambda: encode(Image.new("L", (20000, 1)), "PNG", optimize=True), "InvalidParameterException"),
    "36000000x1 PNG": (lambda: encode(Image.new("1", (36_000_000, 1)), "PNG", optimize=True),
                       "InvalidParameterException"),
    "79x4000 JPEG": (lambda: encode(Image.new("RGB", (79, 4000)), "JPEG"), "InvalidParameterException"),
    "6001x6000 PNG": (lambda: encode(Image.new("1", (6001, 6000)), "PNG", optimize=True), "ImageTooLargeException"),
    "JPEG of 1006 scans": (lambda: many_scans(1000), "InvalidImageFormatException"),
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", REFUSED)
def test_refused_up_front_by_every_operation(servers, collections, face, shape):
    build, code = REFUSED[shape]
    data = build()
    for engine, srv in servers.items():
        for operation in OPERATIONS:
            assert answer(srv, collections[engine], face, operation, data) == code, (engine, operation)


ACCEPTED = {
    "60000x600 1-bit PNG": lambda: encode(Image.new("1", (60000, 600)), "PNG", optimize=True),
    "16-bit grey 6000x6000 PNG": lambda: encode(Image.new("I;16", (6000, 6000), 30000), "PNG"),
    "RGBA 6000x6000 PNG": lambda: encode(Image.new("RGBA", (6000, 6000), (1, 2, 3, 128)), "PNG"),
    "palette+tRNS 6000x6000 PNG": lambda: encode(Image.new("P", (6000, 6000)), "PNG", transparency=0),
    "CMYK progressive 6000x6000 JPEG": lambda: encode(Image.new("CMYK", (6000, 6000), (9, 8, 7, 6)), "JPEG",
                                                      progressive=True),
    "noise 6000x6000 JPEG (S3Object)": lambda: encode(Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (6000, 6000), dtype=np.uint8)), "JPEG", quality=30),
    "animated 6000x6000 PNG": lambda: encode(Image.new("L", (6000, 6000), 50), "PNG", save_all=True,
                                             append_images=[Image.new("L", (6000, 6000), 200)] * 2),
    "4 MB of EXIF in a PNG": lambda: encode(Image.new("RGB", (2000, 1500), (90, 90, 90)), "PNG",
                                            exif=exif(6, filler=4_000_000)),
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", ACCEPTED)
def test_accepted_shapes_answer_with_bounded_memory(servers, collections, face, shape):
    data = ACCEPTED[shape]()
    for engine, srv in servers.items():
        assert_no_face("DetectFaces", answer(srv, collections[engine], face, "DetectFaces", data))
    for operation in OPERATIONS:  # every operation, on the default engine
        assert_no_face(operation, answer(servers["onnx"], collections["onnx"], face, operation, data))


@pytest.mark.slow
def test_three_16bit_pngs_at_once(servers, collections, face):
    data = ACCEPTED["16-bit grey 6000x6000 PNG"]()
    for engine, srv in servers.items():
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda _: answer(srv, collections[engine], face, "DetectFaces", data), range(3)))
        for result in results:
            assert_no_face("DetectFaces", result)


@pytest.mark.slow
def test_a_large_photo_gives_the_small_photos_answer(servers, collections):
    """The astronaut at 512x512 and enlarged to 6000x6000 (decoded at the working size): the small photo's face
    is found in the large one at the same place (as ratios), and each photo finds the other."""
    small = astronaut()
    small_jpeg = encode(small, "JPEG", quality=95)
    big_jpeg = encode(small.resize((6000, 6000), Image.BICUBIC), "JPEG", quality=90)
    keys = ("Left", "Top", "Width", "Height")
    for engine, srv in servers.items():
        client = srv.client()
        face_box = client.detect_faces(Image={"Bytes": small_jpeg})["FaceDetails"][0]["BoundingBox"]  # largest
        big_boxes = [d["BoundingBox"] for d in client.detect_faces(Image=as_image(srv, big_jpeg))["FaceDetails"]]
        assert any(all(abs(face_box[k] - b[k]) < 0.02 for k in keys) for b in big_boxes), (engine, face_box, big_boxes)
        cid = f"large-{uuid.uuid4().hex[:8]}"
        client.create_collection(CollectionId=cid)
        indexed = client.index_faces(CollectionId=cid, Image=as_image(srv, big_jpeg))["FaceRecords"]
        found = client.search_faces_by_image(CollectionId=cid, Image={"Bytes": small_jpeg})["FaceMatches"]
        assert found and found[0]["Similarity"] >= 80, engine
        match = next(r["Face"] for r in indexed if r["Face"]["FaceId"] == found[0]["Face"]["FaceId"])
        assert all(abs(face_box[k] - match["BoundingBox"][k]) < 0.02 for k in keys), (engine, match)
        compared = client.compare_faces(SourceImage={"Bytes": small_jpeg}, TargetImage=as_image(srv, big_jpeg))
        assert compared["FaceMatches"] and compared["FaceMatches"][0]["Similarity"] >= 80, engine
        client.delete_collection(CollectionId=cid)
        assert peak_rss_mib(srv) < PEAK_RSS_MIB


# ------------------------------------------------------------------------------------------- out of memory


def test_memory_error_is_a_retryable_4xx_and_recorded(tmp_path):
    """A real MemoryError (the process's address space capped just above what it holds) while an image
    decodes: ProvisionedThroughputExceededException (HTTP 400, retried by botocore), recorded in the
    ledger; the next small request succeeds."""
    script = textwrap.dedent(f"""
        import io, json, resource, sys
        from PIL import Image
        from faceledger.service import Service, ServiceConfig
        from faceledger.service.errors import RekognitionError
        big = io.BytesIO(); Image.new("I;16", (6000, 6000), 1000).save(big, "PNG")
        small = io.BytesIO(); Image.new("RGB", (100, 100)).save(small, "PNG")
        service = Service(ServiceConfig(data_dir={str(tmp_path)!r}))
        service.verify_ledger()
        size = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize")][0]
        resource.setrlimit(resource.RLIMIT_AS, (size + 48 * 2**20, resource.RLIM_INFINITY))
        out = {{}}
        try:
            service.call("DetectFaces", {{"Image": {{"Bytes": big.getvalue()}}}})
            out["big"] = "OK"
        except RekognitionError as exc:
            out["big"] = [exc.code, exc.status, exc.message]
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        out["small"] = service.call("DetectFaces", {{"Image": {{"Bytes": small.getvalue()}}}})["FaceDetails"]
        out["ledger"] = [(r["operation"], r["result"]) for r in service.ledger(operation="DetectFaces")]
        print(json.dumps(out))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    code, status, message = out["big"]
    assert (code, status) == ("ProvisionedThroughputExceededException", 400)
    assert "memory" in message
    assert out["small"] == []
    assert out["ledger"] == [["DetectFaces", "ProvisionedThroughputExceededException"], ["DetectFaces", "OK"]]
