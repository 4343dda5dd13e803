"""``faceledger eval``: verification, identification and calibration reports."""

from __future__ import annotations

from pathlib import Path

import click

from .common import CliError
from .main import main


def _check_report_dependencies() -> None:
    """Fail at once, not after minutes of embedding, when the report cannot be drawn."""
    from ..evaluation.report import MissingDependency, require_plotting

    try:
        require_plotting()
    except MissingDependency as exc:
        raise CliError(str(exc)) from None


@main.group("eval")
def eval_group() -> None:
    """Evaluate the engine on labelled data (person folders): verification, 1:N identification, calibration."""


_EVAL_DATASET = click.option("--dataset", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                             help="A folder of person folders (Name/Name_0001.jpg), as LFW.")
_EVAL_GROUPS = click.option("--groups", "groups_file", default=None, type=click.Path(exists=True, dir_okay=False,
                            path_type=Path), help="CSV mapping an image or an identity to a group label.")
_EVAL_OUT = click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                         help="Folder for report.html and report.json.")
_EVAL_CACHE = click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                           help="Embeddings cache (default $FACELEDGER_CACHE or ~/.cache/faceledger/embeddings).")
_EVAL_SEED = click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random draws.")


@eval_group.command("verify")
@_EVAL_DATASET
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pairs in LFW's pairs.txt format.")
@click.option("--impostors", default=0, show_default=True, type=click.IntRange(min=0),
              help="Draw N extra impostor pairs across all identities (FAR 1e-4 needs far more than 3,000).")
@_EVAL_GROUPS
@_EVAL_OUT
@_EVAL_CACHE
@_EVAL_SEED
def eval_verify(dataset: Path, pairs_file: Path, impostors: int, groups_file: Path | None, out_dir: Path,
                cache_dir: Path | None, seed: int) -> None:
    """1:1 verification: 10-fold accuracy, ROC/DET, EER, TAR at FAR 1e-2/1e-3/1e-4 (counts, 95% CIs)."""
    from ..evaluation import run

    _check_report_dependencies()
    r = run.verify(dataset, pairs_file, out_dir, impostors=impostors, groups_file=groups_file, seed=seed,
                   cache_dir=cache_dir)
    p, fte = r["pairs"], r["pairs"]["failure_to_enrol"]
    n_fte = fte["matched"] + fte["mismatched"]
    click.echo(f"accuracy (10-fold, all {p['total']} pairs; {n_fte} with an image without a face, decided "
               f"'different') {r['accuracy']:.4f} +- {r['accuracy_std']:.4f}")
    click.echo(f"  enrolled pairs only ({p['total'] - n_fte}) {r['accuracy_enrolled_only']:.4f}; failures to enrol "
               f"counted as errors {r['accuracy_fte_as_error']:.4f}")
    click.echo(f"EER {r['eer']:.4f}; {p['matched']} matched, {p['impostors_used']} impostor pairs (enrolled)")
    for name, v in r["tar_at_far_detail"].items():
        lo, hi = v["tar"]["ci95"]
        click.echo(f"  TAR at FAR {name}: {v['tar']['rate']:.4f} ({v['tar']['k']}/{v['tar']['n']}, 95% CI "
                   f"{lo:.4f}-{hi:.4f}) at Similarity {v['similarity']:.1f}"
                   + ("" if v["measurable"] else " (NOT measurable: too few impostor pairs; use --impostors)"))
    click.echo(f"report: {out_dir / 'report.html'}, {out_dir / 'report.json'}")


@eval_group.command("identify")
@_EVAL_DATASET
@click.option("--gallery-size", required=True, type=click.IntRange(min=0),
              help="Identities in the gallery, one image each (0: the largest the dataset allows).")
@click.option("--nonmated", default=500, show_default=True, type=click.IntRange(min=1),
              help="Identities held out of the gallery, searched as strangers.")
@_EVAL_GROUPS
@_EVAL_OUT
@_EVAL_CACHE
@_EVAL_SEED
def eval_identify(dataset: Path, gallery_size: int, nonmated: int, groups_file: Path | None, out_dir: Path,
                  cache_dir: Path | None, seed: int) -> None:
    """1:N identification: FNIR and FPIR at Similarity 80/90/95/99 and the default policy."""
    from ..evaluation import run

    _check_report_dependencies()
    try:
        r = run.identify(dataset, out_dir, gallery_size=gallery_size, nonmated=nonmated, groups_file=groups_file,
                         seed=seed, cache_dir=cache_dir)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"gallery {r['gallery_size']}; {r['mated_searches']} mated, {r['nonmated_searches']} non-mated searches")
    for name, v in r["at"].items():
        click.echo(f"  {name:>16} (Similarity {v['similarity']:.1f}): FNIR {v['fnir']['rate']:.4f}  FPIR "
                   f"{v['fpir']['rate']:.4f}  false matches expected {v['expected_false_matches']:.2f}, observed "
                   f"{v['observed_false_matches']}")
    click.echo(f"report: {out_dir / 'report.html'}, {out_dir / 'report.json'}")


@eval_group.command("calibrate")
@_EVAL_DATASET
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Calibration table to write (JSON; use with faceledger serve --calibration).")
@_EVAL_CACHE
def eval_calibrate(dataset: Path, out_file: Path, cache_dir: Path | None) -> None:
    """Build a Similarity calibration (distance -> FMR) from your own labelled images."""
    from ..evaluation import run
    from ..vision.similarity import SimilarityScale

    obj = run.calibrate(dataset, out_file, cache_dir=cache_dir)
    scale = SimilarityScale.from_dict(obj)
    click.echo(f"{obj['impostor_pairs']} impostor pairs; wrote {out_file}")
    for s in (60, 70, 80, 90, 95, 99):
        click.echo(f"  Similarity {s}: distance <= {scale.max_distance(s):.4f} (FMR {scale.fmr(s):.3g})")
