"""One module per group of Rekognition operations; importing them registers them."""

from . import collections, detect, faces, search, tags, users  # noqa: F401
from . import video  # noqa: F401
