"""The ``faceledger`` command line: one module per command group, all registered on :data:`main`."""

from . import analysis, audit, collections, evaluation, faces, governance, keys, models, serve, users  # noqa: F401 (registers)
from . import streams  # noqa: F401 (registers `faceledger streams`)
from . import video  # noqa: F401 (registers)
from . import migrate  # noqa: F401 (registers `faceledger migrate`)
from .common import App, CliError
from .faces import external_image_id, image_files
from .main import main

__all__ = ["App", "CliError", "external_image_id", "image_files", "main"]
