"""Image analysis commands: ``faceledger text IMAGE`` (DetectText), and the label commands beside it."""

from __future__ import annotations

from pathlib import Path

import click

from .common import App, client_command, fmt_box, fmt_pct, image_path, image_size, read_image
from .main import main


@client_command(main, "text")
@click.argument("image", type=image_path)
@click.option("--min-confidence", type=click.FloatRange(0, 100), default=None,
              help="WordFilter.MinConfidence (default: the server's, 80)")
@click.option("--words", is_flag=True, help="list the words too, not only the lines")
def text(app: App, image: Path, min_confidence: float | None, words: bool) -> None:
    """Read the text in IMAGE (DetectText): one row a line (--words: and a row a word)."""
    app.stateless = True
    params = {"Filters": {"WordFilter": {"MinConfidence": min_confidence}}} if min_confidence is not None else {}
    r = app.call("detect_text", Image=read_image(image), **params)
    if app.as_json:
        return app.print_json(r)
    items = [d for d in r.get("TextDetections", []) if words or d.get("Type") == "LINE"]
    lines = sum(1 for d in r.get("TextDetections", []) if d.get("Type") == "LINE")
    app.out.print(f"{lines} line{'s' if lines != 1 else ''} of text in {image} ({r.get('TextModelVersion')})",
                  markup=False)
    if not items:
        return
    from rich.text import Text

    size = image_size(image)
    table = app.table("Id", "Type", "Text", "Confidence", "Box")
    for d in items:
        kind = d.get("Type", "")
        table.add_row(str(d.get("Id")), kind if kind == "LINE" else f"  {kind} of {d.get('ParentId')}",
                      Text(d.get("DetectedText", "")), fmt_pct(d.get("Confidence")),
                      fmt_box(d.get("Geometry", {}).get("BoundingBox"), size))
    app.out.print(table)


@client_command(main, "moderation")
@click.argument("image", type=image_path)
@click.option("--min-confidence", type=click.FloatRange(0, 100), default=None,
              help="MinConfidence (default: the server's, 50)")
def moderation(app: App, image: Path, min_confidence: float | None) -> None:
    """Check IMAGE for sexual content (DetectModerationLabels), and say what this server cannot check."""
    app.stateless = True
    params = {"MinConfidence": min_confidence} if min_confidence is not None else {}
    r = app.call("detect_moderation_labels", Image=read_image(image), **params)
    if app.as_json:
        return app.print_json(r)
    labels = r.get("ModerationLabels", [])
    app.out.print(f"{len(labels)} moderation label{'s' if len(labels) != 1 else ''} in {image} "
                  f"({r.get('ModerationModelVersion')})", markup=False)
    if labels:
        table = app.table("Label", "Level", "Parent", "Confidence")
        for label in labels:
            table.add_row(label.get("Name", ""), str(label.get("TaxonomyLevel", "")), label.get("ParentName", ""),
                          fmt_pct(label.get("Confidence")))
        app.out.print(table)
    for content in r.get("ContentTypes", []):
        app.out.print(f"content type: {content.get('Name')} {fmt_pct(content.get('Confidence'))}", markup=False)
    undetectable = getattr(app, "last_headers", {}).get("x-faceledger-undetectable-categories")
    if undetectable:
        app.out.print(f"not checked (no model on this server): {undetectable}", markup=False)


@client_command(main, "labels")
@click.argument("image", type=image_path)
@click.option("--min-confidence", type=click.FloatRange(0, 100), default=None,
              help="MinConfidence (default: the server's, 55)")
@click.option("--max-labels", type=click.IntRange(0), default=None, help="at most this many labels")
@click.option("--properties", is_flag=True, help="also the image's quality and dominant colours (IMAGE_PROPERTIES)")
def labels(app: App, image: Path, min_confidence: float | None, max_labels: int | None, properties: bool) -> None:
    """Label what IMAGE shows (DetectLabels): objects, animals, food, places, with parents and categories."""
    app.stateless = True
    params: dict = {}
    if min_confidence is not None:
        params["MinConfidence"] = min_confidence
    if max_labels is not None:
        params["MaxLabels"] = max_labels
    if properties:
        params["Features"] = ["GENERAL_LABELS", "IMAGE_PROPERTIES"]
    r = app.call("detect_labels", Image=read_image(image), **params)
    if app.as_json:
        return app.print_json(r)
    found = r.get("Labels", [])
    app.out.print(f"{len(found)} label{'s' if len(found) != 1 else ''} in {image} ({r.get('LabelModelVersion')})",
                  markup=False)
    if found:
        table = app.table("Label", "Confidence", "Boxes", "Parents", "Categories")
        for label in found:
            table.add_row(label.get("Name", ""), fmt_pct(label.get("Confidence")),
                          str(len(label.get("Instances", []))) if label.get("Instances") else "",
                          ", ".join(p["Name"] for p in label.get("Parents", [])),
                          ", ".join(c["Name"] for c in label.get("Categories", [])))
        app.out.print(table)
    props = r.get("ImageProperties")
    if props:
        q = props.get("Quality", {})
        app.out.print("quality: " + ", ".join(f"{k.lower()} {q[k]:.0f}" for k in ("Brightness", "Sharpness", "Contrast")
                                              if k in q), markup=False)
        colors = props.get("DominantColors", [])
        if colors:
            app.out.print("dominant colours: " + ", ".join(
                f"{c['HexCode']} {c['CSSColor']} ({c['SimplifiedColor']}) {c['PixelPercent']:.0f}%" for c in colors),
                markup=False)
