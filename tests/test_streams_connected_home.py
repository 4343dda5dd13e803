"""ConnectedHome (label detection) stream processors through boto3 on a live server (docs/streams.md): a processor
over a video file source (the hamilton clip, two people on stage) reports PERSON once, with Rekognition's SNS
notification layout posted to the topic's webhook, the frame and the crop written as JPEG objects of its S3
destination, its end-of-session summary, and ledger entries; PACKAGE and bad settings are refused with AWS
errors; the COCO -> PET mapping on a real cat photo."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from conftest import Server, shared_data
from test_streams import ROLE, STREAM_ENV, Webhook, data_arn, extension, ledger, video_arn, wait_for

TOPIC = "arn:aws:sns:us-east-1:000000000000:porch-events"
BUCKET = "home"


@pytest.fixture(scope="module")
def hook():
    webhook = Webhook()
    yield webhook
    webhook.close()


def home_server(root, topic: str, url: str) -> Server:
    """A server whose SNS ``topic`` posts to ``url``, with the bucket BUCKET and the source "porchcam" (the
    hamilton clip played as a camera)."""
    (root / "buckets" / BUCKET).mkdir(parents=True)
    srv = Server(root / "data", root / "buckets", ["--notify", f"{topic}={url}"], env={**os.environ, **STREAM_ENV})
    extension(srv, "AddStreamSource", Name="porchcam", Url=str(shared_data("video", "short_hamilton_clip.mp4")))
    return srv


@pytest.fixture(scope="module")
def home(tmp_path_factory, hook):
    srv = home_server(tmp_path_factory.mktemp("home"), TOPIC, hook.url)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rek(home):
    return home.client()


@pytest.fixture(scope="module")
def raw(home):
    """A client that sends what it is given (no client-side validation): the server's own answers."""
    return home.client(parameter_validation=False)


def create(client, name: str, labels, *, output=None, channel=True, tags=None, **settings):
    return client.create_stream_processor(
        Name=name, RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": video_arn("porchcam")}},
        Output=output or {"S3Destination": {"Bucket": BUCKET, "KeyPrefix": "cam/"}},
        **({"NotificationChannel": {"SNSTopicArn": TOPIC}} if channel else {}), **({"Tags": tags} if tags else {}),
        Settings={"ConnectedHome": {"Labels": labels, **settings}})


def error_of(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def object_of(home: Server, uri: str) -> bytes:
    assert uri.startswith(f"s3://{BUCKET}/"), uri
    return (home.buckets_dir / BUCKET / uri[len(f"s3://{BUCKET}/"):]).read_bytes()


def test_a_person_on_the_source_gives_one_person_notification_with_its_images(home, rek, hook):
    # no collection, no AllowLiveSearch, no purpose or case: nothing is searched
    arn = create(rek, "porch", ["ALL"], tags={"site": "porch"})["StreamProcessorArn"]
    described = rek.describe_stream_processor(Name="porch")
    assert described["StreamProcessorArn"] == arn and described["Status"] == "STOPPED"
    assert described["Settings"] == {"ConnectedHome": {"Labels": ["ALL"], "MinConfidence": 50.0}}
    assert described["NotificationChannel"] == {"SNSTopicArn": TOPIC}
    since = int((time.time() - 60) * 1000)  # a start point in the past: the newest frame of the live source
    session = rek.start_stream_processor(
        Name="porch", StartSelector={"KVSStreamStartSelector": {"ProducerTimestamp": since}},
        StopSelector={"MaxDurationInSeconds": 3})["SessionId"]

    def bodies():
        return [json.loads(b) for b in hook.bodies]

    done = wait_for("the end-of-session notification", lambda: [
        b for b in bodies() if b["Message"]["eventNamespace"]["type"] == "STREAM_PROCESSING_COMPLETE"], timeout=90)
    # it stopped by itself after MaxDurationInSeconds
    wait_for("STOPPED", lambda: rek.describe_stream_processor(Name="porch")["Status"] == "STOPPED", timeout=20)
    events = [b for b in bodies() if b["Message"]["eventNamespace"]["type"] == "LABEL_DETECTED"]
    assert len(events) == 1 and len(done) == 1, bodies()  # the first PERSON only; no pet on stage
    event = events[0]
    assert event["Subject"] == "Rekognition Stream Processing Event"
    message = event["Message"]
    assert message["inputInformation"] == {"kinesisVideo": {"streamArn": video_arn("porchcam")}}
    assert message["sessionId"] == session and message["tags"] == {"site": "porch"}
    assert message["startStreamProcessorRequest"]["StopSelector"] == {"MaxDurationInSeconds": 3}
    assert message["labels"] and {label["name"] for label in message["labels"]} == {"PERSON"}
    frame = Image.open(io.BytesIO(object_of(home, message["labels"][0]["frameImageUri"])))
    assert frame.format == "JPEG" and frame.size == (640, 360)
    for label in message["labels"]:
        assert set(label) == {"id", "name", "confidence", "frameImageUri", "croppedImageUri", "videoMapping",
                              "boundingBox"}
        assert label["confidence"] >= 50
        box = label["boundingBox"]
        assert set(box) == {"left", "top", "height", "width"}
        assert 0 <= box["left"] < 1 and 0 <= box["top"] < 1 and box["width"] * box["height"] > 0.005
        assert label["frameImageUri"].startswith(f"s3://{BUCKET}/cam/porch/{session}/{message['eventId']}/")
        crop = Image.open(io.BytesIO(object_of(home, label["croppedImageUri"])))
        assert crop.format == "JPEG"
        assert abs(crop.size[0] - box["width"] * 640) <= 2 and abs(crop.size[1] - box["height"] * 360) <= 2
        mapping = label["videoMapping"]["kinesisVideoMapping"]
        assert mapping["fragmentNumber"].isdigit() and mapping["frameOffsetMillis"] >= 0
        assert abs(mapping["serverTimestamp"] / 1000 - time.time()) < 120
    end = done[0]["Message"]
    assert end["sessionId"] == session and end["inputInformation"]["kinesisVideo"]["streamArn"] == video_arn("porchcam")
    assert end["inputInformation"]["kinesisVideo"]["processedVideoDurationMillis"] >= 0
    assert "PERSON" in end["streamProcessingResults"]["message"]
    # the S3 destination keeps every notification, as JSON Lines
    kept = [json.loads(line) for path in (home.buckets_dir / BUCKET / "cam" / "porch" / session).glob("*.jsonl")
            for line in path.read_text().splitlines()]
    assert [k["Message"]["eventId"] for k in kept] == [message["eventId"], end["eventId"]]
    # the ledger: the detection (the frame's location and its labels) and the end of the session
    entries = [e for e in ledger(home, "StreamProcessorLabelDetected") if e["detail"]["Request"]["Name"] == "porch"]
    assert len(entries) == 1
    assert {f["Name"] for f in entries[0]["detail"]["Found"]["Labels"]} == {"PERSON"}
    assert entries[0]["detail"]["Images"][0]["S3Object"] == message["labels"][0]["frameImageUri"]
    assert any(n.startswith("Frame SHA-256 ") for n in entries[0]["detail"]["Notes"])
    assert len(ledger(home, "StreamProcessorSessionComplete")) == 1
    status = extension(home, "GetStreamProcessorStatus", Name="porch")
    assert status["Stats"]["FramesAnalysed"] >= 1 and status["Stats"]["LabelsDetected"] >= 1
    rek.delete_stream_processor(Name="porch")


def test_package_and_bad_settings_are_refused(home, rek, raw):
    for labels in (["PACKAGE"], ["PERSON", "PACKAGE"], ["ALL", "PACKAGE"]):
        code, message = error_of(create, rek, "p-package", labels)
        assert code == "InvalidParameterException" and "PACKAGE is not supported" in message, message
    code, message = error_of(create, rek, "p-car", ["CAR"])
    assert code == "InvalidParameterException" and "'CAR'" in message
    # the model's limits: at least one label, MinConfidence 0-100, at most 120 s
    assert error_of(create, raw, "p-x", [])[0] == "ValidationException"
    assert error_of(create, raw, "p-x", ["PERSON"], MinConfidence=101)[0] == "ValidationException"
    # one kind of processor at a time; images need an S3 destination; an SNS topic needs a webhook here
    code, message = error_of(rek.create_stream_processor, Name="p-x", RoleArn=ROLE,
                             Input={"KinesisVideoStream": {"Arn": video_arn("porchcam")}},
                             Output={"S3Destination": {"Bucket": BUCKET}},
                             Settings={"ConnectedHome": {"Labels": ["PET"]}, "FaceSearch": {"CollectionId": "c"}})
    assert code == "InvalidParameterException" and "not both" in message
    code, message = error_of(create, rek, "p-x", ["PERSON"], output={"KinesisDataStream": {"Arn": data_arn("x")}})
    assert code == "InvalidParameterException" and "S3Destination" in message
    code, message = error_of(rek.create_stream_processor, Name="p-x", RoleArn=ROLE,
                             Input={"KinesisVideoStream": {"Arn": video_arn("porchcam")}},
                             Output={"S3Destination": {"Bucket": BUCKET}},
                             NotificationChannel={"SNSTopicArn": "arn:aws:sns:us-east-1:000000000000:other"},
                             Settings={"ConnectedHome": {"Labels": ["PET"]}})
    assert code == "InvalidParameterException" and "--notify" in message

    create(rek, "p-pet", ["PET"], channel=False, MinConfidence=70)
    assert rek.describe_stream_processor(Name="p-pet")["Settings"]["ConnectedHome"] == {
        "Labels": ["PET"], "MinConfidence": 70.0}
    for selector in ({}, {"KVSStreamStartSelector": {}},
                     {"KVSStreamStartSelector": {"ProducerTimestamp": 1, "FragmentNumber": "1"}}):
        code, message = error_of(raw.start_stream_processor, Name="p-pet", StartSelector=selector)
        assert code == "InvalidParameterException" and "ProducerTimestamp" in message
    assert error_of(raw.start_stream_processor, Name="p-pet",
                    StopSelector={"MaxDurationInSeconds": 121})[0] == "ValidationException"
    # updates: labels checked the same way, MinConfidence back to its default when deleted
    code, message = error_of(rek.update_stream_processor, Name="p-pet",
                             SettingsForUpdate={"ConnectedHomeForUpdate": {"Labels": ["PACKAGE"]}})
    assert code == "InvalidParameterException" and "PACKAGE" in message
    rek.update_stream_processor(Name="p-pet", SettingsForUpdate={"ConnectedHomeForUpdate": {"Labels": ["PERSON"]}})
    rek.update_stream_processor(Name="p-pet", ParametersToDelete=["ConnectedHomeMinConfidence"])
    assert rek.describe_stream_processor(Name="p-pet")["Settings"]["ConnectedHome"] == {
        "Labels": ["PERSON"], "MinConfidence": 50.0}
    rek.delete_stream_processor(Name="p-pet")
    assert {e["result"] for e in ledger(home, "CreateStreamProcessor")} >= {"InvalidParameterException",
                                                                           "ValidationException", "OK"}


@pytest.fixture(scope="module")
def detector():
    from faceledger.analysis.objects import ObjectDetector

    return ObjectDetector(threads=1)


def test_coco_animals_are_pets_and_people_are_persons(detector):
    """The detector's classes mapped to ConnectedHome labels on real photos: dlib's photo of dogs (no person) gives
    PET and no PERSON; scikit-image's astronaut gives PERSON and no PET."""
    skimage_data = pytest.importorskip("skimage.data")
    from faceledger.streams.connected_home import find_labels, labels_in_force

    both = labels_in_force(["ALL"])
    assert both == ("PERSON", "PET")
    dogs = np.asarray(Image.open(shared_data("groups", "dlib_faces", "dogs.jpg")).convert("RGB"))
    pets = find_labels(detector.detect, dogs, both, 50.0)
    assert pets and {f.label for f in pets} == {"PET"}
    assert find_labels(detector.detect, dogs, ("PERSON",), 50.0) == []
    person = find_labels(detector.detect, skimage_data.astronaut(), both, 50.0)
    assert person and {f.label for f in person} == {"PERSON"}
    # a region of interest that holds no box's centre keeps nothing
    assert find_labels(detector.detect, skimage_data.astronaut(), both, 50.0, keep=lambda box: False) == []
    assert all(0 <= f.box["left"] <= 1 and 0 < f.box["width"] <= 1 for f in pets + person)


def test_a_close_up_cat_is_a_pet_and_no_person(detector):
    """NanoDet-m alone calls scikit-image's close-up of a cat Person 0.59 (Cat 0.40, Dog 0.40); the ImageNet
    classifier's check of Person boxes (analysis/objects.py) makes that box the cat's."""
    skimage_data = pytest.importorskip("skimage.data")
    from faceledger.streams.connected_home import find_labels

    cat = skimage_data.chelsea()
    found = find_labels(detector.detect, cat, ("PERSON", "PET"), 50.0)
    assert {f.label for f in found} == {"PET"}
    raw = detector.detect(cat, 0.35, check_persons=False)  # the detector alone: Person 0.59, Cat 0.40, Dog 0.40
    assert raw[0].name == "Person" and {"Cat", "Dog"} <= {o.name for o in raw}
    checked = detector.check_persons(cat, raw)  # the Person box becomes the classifier's Cat, with its score
    assert "Person" not in {o.name for o in checked} and (checked[0].name, checked[0].score) == ("Cat", raw[0].score)


def test_cli_creates_and_describes_a_label_detection_processor(home):
    """`faceledger streams processors create --labels` against the server, then `describe` and `delete`."""
    from click.testing import CliRunner

    from faceledger.cli import main

    env = {"AWS_ACCESS_KEY_ID": home.key_id, "AWS_SECRET_ACCESS_KEY": home.secret,
           "AWS_EC2_METADATA_DISABLED": "true", "COLUMNS": "160"}

    def cli(*args: str, code: int = 0):
        done = CliRunner(env=env).invoke(main, ["streams", "processors", *args, "--endpoint", home.url,
                                                "--region", "us-east-1"], catch_exceptions=False)
        assert done.exit_code == code, (done.stdout, done.stderr)
        return done

    assert "PACKAGE is not supported" in cli("create", "p-cli", "--source", "porchcam", "--labels", "person,package",
                                             "--s3-bucket", BUCKET, code=2).stderr
    assert "--collection" in cli("create", "p-cli", "--source", "porchcam", code=2).stderr
    cli("create", "p-cli", "--source", "porchcam", "--labels", "PERSON,PET", "--min-confidence", "60",
        "--s3-bucket", BUCKET, "--notify-topic", TOPIC)
    described = json.loads(cli("describe", "p-cli", "--json").stdout)["StreamProcessor"]
    assert described["Settings"] == {"ConnectedHome": {"Labels": ["PERSON", "PET"], "MinConfidence": 60.0}}
    assert described["Output"] == {"S3Destination": {"Bucket": BUCKET, "KeyPrefix": ""}}
    table = cli("describe", "p-cli").stdout
    assert "Labels" in table and "PERSON, PET" in table
    cli("delete", "p-cli")


@pytest.fixture
def door(tmp_path):
    """An in-process service (as test_cli_streams runs one) with a PERSON processor "door" on the hamilton clip,
    hosting no processor until the test calls streams.host: (service, client, the processor's S3 folder)."""
    from faceledger.client import Client
    from faceledger.service import Service, ServiceConfig, streams

    (tmp_path / "buckets" / BUCKET).mkdir(parents=True)
    service = Service(ServiceConfig(data_dir=tmp_path / "data", buckets_dir=tmp_path / "buckets"))
    client = Client(service=service)
    try:
        client.add_stream_source(Name="cam", Url=str(shared_data("video", "short_hamilton_clip.mp4")))
        client.create_stream_processor(
            Name="door", RoleArn=ROLE, Input={"KinesisVideoStream": {"Arn": video_arn("cam")}},
            Output={"S3Destination": {"Bucket": BUCKET}}, Settings={"ConnectedHome": {"Labels": ["PERSON"]}})
        yield service, client, tmp_path / "buckets" / BUCKET / "door"
    finally:
        streams.shutdown(service)
        service.close()


def _messages(folder) -> list[dict]:
    """The notifications a session's S3 destination kept (its JSON Lines objects, in order)."""
    return [json.loads(line)["Message"] for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text().splitlines()]


def test_a_session_resumes_for_the_time_it_had_left(door):
    """A server that (re)starts resumes a ConnectedHome session for what is left of its MaxDurationInSeconds, and
    one whose duration ran out meanwhile is STOPPED, not run again."""
    from faceledger.service import streams

    service, client, folder = door
    # no server hosts processors yet: the start is recorded, and a server resumes it
    session = client.start_stream_processor(Name="door", StopSelector={"MaxDurationInSeconds": 3})["SessionId"]
    assert streams.host(service) == ["door"]
    wait_for("the session's end", lambda: client.describe_stream_processor(Name="door")["Status"] == "STOPPED"
             and not streams.runtime_of(service).is_running("door"), timeout=60)
    assert streams.runtime_of(service).tables.desired_running() == []  # a StopSelector's stop is final
    kept = _messages(folder / session)
    assert [m["eventNamespace"]["type"] for m in kept] == ["LABEL_DETECTED", "STREAM_PROCESSING_COMPLETE"]
    assert all(m["sessionId"] == session for m in kept)
    streams.shutdown(service)

    # started while no server runs, and its 1 s is over by the time one does: stopped, saying why
    client.start_stream_processor(Name="door", StopSelector={"MaxDurationInSeconds": 1})
    time.sleep(1.2)
    assert streams.host(service) == []
    described = client.describe_stream_processor(Name="door")
    assert described["Status"] == "STOPPED" and "ran out" in described["StatusMessage"]


def test_a_resumed_session_does_not_notify_its_labels_again(door):
    """A server stopped in the middle of a ConnectedHome session resumes it (the same SessionId) without a second
    LABEL_DETECTED for a label the session already notified: what was notified is read back from the ledger."""
    from faceledger.service import streams

    service, client, folder = door
    session = client.start_stream_processor(Name="door", StopSelector={"MaxDurationInSeconds": 8})["SessionId"]
    assert streams.host(service) == ["door"]
    wait_for("the first PERSON", lambda: list(service.store.ledger_rows(operation="StreamProcessorLabelDetected")),
             timeout=60)
    streams.shutdown(service)  # the server stops: the session stays wanted
    assert streams.host(service) == ["door"]  # and the next start resumes it
    wait_for("the session's end", lambda: client.describe_stream_processor(Name="door")["Status"] == "STOPPED"
             and not streams.runtime_of(service).is_running("door"), timeout=60)
    kept = _messages(folder / session)
    kinds = [m["eventNamespace"]["type"] for m in kept]
    assert kinds.count("LABEL_DETECTED") == 1 and kinds[-1] == "STREAM_PROCESSING_COMPLETE", kinds
    assert all(m["sessionId"] == session for m in kept)
    assert len(list(service.store.ledger_rows(operation="StreamProcessorLabelDetected"))) == 1


def test_imagenet_animals_map_to_coco_animals_wild_ones_to_none():
    from faceledger.analysis.labels import class_table
    from faceledger.analysis.objects import COCO, coco_animal

    mapped = {c["Name"]: coco_animal(c["Parents"], c["Name"]) for c in class_table()}
    assert mapped["Tabby Cat"] == "Cat" and mapped["Golden Retriever"] == "Dog" and mapped["Ox"] == "Cow"
    assert mapped["Ram"] == "Sheep" and mapped["Zebra"] == "Zebra" and mapped["Brown Bear"] == "Bear"
    # wild cats and dogs are no COCO pets; a person-like or man-made class is no animal
    assert mapped["Cougar"] is None and mapped["Lion"] is None and mapped["Grey Wolf"] is None
    assert mapped["Teddy Bear"] is None and mapped["Scuba Diver"] is None
    assert set(mapped.values()) - {None} <= {name for name, _, _ in COCO}
