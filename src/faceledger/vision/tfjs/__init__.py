"""TensorFlow.js models -> ONNX: graph-model converter (:mod:`.convert`), weight
manifests (:mod:`.weights`) and the face-api networks, whose architecture lives in
face-api's code rather than in a graph file (:mod:`.faceapi`)."""

from .convert import OPSET, ConversionError, TfGraph, convert, convert_model_json, load_model_json
from .weights import read_manifest, read_manifest_file

__all__ = [
    "OPSET",
    "ConversionError",
    "TfGraph",
    "convert",
    "convert_model_json",
    "load_model_json",
    "read_manifest",
    "read_manifest_file",
]
