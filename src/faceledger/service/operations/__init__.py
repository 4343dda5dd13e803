"""One module per group of Rekognition operations; importing them registers them."""

from . import analysis, collections, detect, faces, search, tags, users  # noqa: F401
from . import streams  # noqa: F401  (stream processors)
from . import video  # noqa: F401
