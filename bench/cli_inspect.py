"""`bench` commands that read, never train: data sets (`data`), item codes (`codes`), the
registered tokenizers, and finished runs set beside the paper or beside each other."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bench.cli_common import parse_sets, user_errors


@click.command("compare-paper")
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
@user_errors
def compare_paper_cmd(results: Path) -> None:
    """Our test Recall/NDCG@10 (mean ± seed std) beside the published figures; writes paper_comparison.md."""
    from bench.reporting.paper import write_comparison

    table, path = write_comparison(results)
    click.echo(table.to_string(index=False))
    click.echo(f"written: {path}")


@click.command("compare-runs")
@click.argument("old", type=click.Path(file_okay=False, path_type=Path))
@click.argument("new", type=click.Path(file_okay=False, path_type=Path))
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Level at which a Holm-corrected p-value counts as a difference.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as markdown here.")
@user_errors
def compare_runs_cmd(old: Path, new: Path, alpha: float, out: Path | None) -> None:
    """Two finished runs side by side: R@10, N@10, rank and the verdict against the reference, per tokenizer."""
    from bench.io import atomic_write_text
    from bench.reporting.compare_runs import compare_runs, comparison_markdown

    table = compare_runs(old, new, alpha)
    click.echo(table.to_string(index=False))
    if out is not None:
        atomic_write_text(out, comparison_markdown(table, old, new, alpha))
        click.echo(f"written: {out}")


@click.command("tokenizers")
def tokenizers_cmd() -> None:
    """List the registered tokenizers."""
    from bench.tokenizers import TOKENIZERS

    for name, cls in TOKENIZERS.items():
        arg = ":PATH" if cls.takes_argument else ""
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        click.echo(f"{name + arg:<20} {doc}")


@click.group("data")
def data_group() -> None:
    """Prepare data sets and describe them."""


@data_group.group("prepare")
def prepare_group() -> None:
    """Turn a public dump into a folder `bench run --dataset letter:DIR` reads."""


@prepare_group.command("amazon")
@click.option("--reviews", required=True, type=click.Path(dir_okay=False), help="Reviews file (2014 or 2018 dump, .json or .json.gz).")
@click.option("--meta", required=True, type=click.Path(dir_okay=False), help="Metadata file of the same category.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write (LETTER format).")
@click.option("--name", default=None, help="File prefix X in X.inter.json (default: the folder's name).")
@click.option("--kcore", default=5, show_default=True, type=int, help="Minimum interactions per user and per item.")
@user_errors
def prepare_amazon_cmd(reviews: str, meta: str, out: str, name: str | None, kcore: int) -> None:
    """Raw Amazon Reviews -> LETTER-format folder with id maps and a data card."""
    from bench.datasets.amazon import AmazonOptions, prepare_amazon
    from bench.options import make_options

    opts = make_options(AmazonOptions, {"kcore": kcore}, "amazon")
    card = prepare_amazon(reviews, meta, out, name, opts)
    after = card["counts"]["after_kcore"]
    click.echo(f"wrote {out}: {after['users']:,} users, {after['items']:,} items, "
               f"{after['interactions']:,} interactions ({card['counts']['items_without_meta']:,} items without metadata)")


@data_group.command("stats")
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@user_errors
def data_stats_cmd(spec: str, as_json: bool) -> None:
    """Counts, sequence lengths and split sizes of a data set SPEC (synthetic, ml-100k:PATH, letter:PATH, ...)."""
    from bench.datasets import load_dataset
    from bench.datasets.stats import dataset_stats, format_stats

    stats = dataset_stats(load_dataset(spec))
    click.echo(json.dumps(stats, indent=2) if as_json else format_stats(stats))


@click.group("codes")
def codes_group() -> None:
    """Inspect item codes (index.json files)."""


@codes_group.command("stats")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as one JSON object.")
@click.option("--codebook-size", type=click.IntRange(min=1), default=None,
              help="Codebook size of every level (default: from FILE's .state.json sidecar, else inferred).")
@user_errors
def codes_stats_cmd(file: Path, as_json: bool, codebook_size: int | None) -> None:
    """Per-level code usage and whole-code collisions of FILE.index.json."""
    from bench.evaluation.code_stats import code_stats, load_index, saved_codebook_sizes, stats_frame

    # sizes: --codebook-size, else the tokenizer state saved beside the file, else inferred
    stats = code_stats(load_index(file), codebook_size or saved_codebook_sizes(file))
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"items {stats['n_items']}  distinct codes {stats['n_unique']}  "
               f"colliding {stats['n_items'] - stats['n_unique']} ({100 * stats['collision_rate']:.2f}%)  "
               f"largest group {stats['max_group']}")
    table = stats_frame(stats).drop(columns=["n_items", "n_unique", "collision_rate", "max_group"])
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@codes_group.command("fit")
@click.argument("tokenizer")
@click.option("--dataset", default="synthetic", show_default=True, help="Data set spec.")
@click.option("--preset", default="quick", show_default=True, help="quick, cpu, paper")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="SECTION.NAME=VALUE", help="e.g. letter.beta=0")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Where to write the index.json.")
@user_errors
def codes_fit_cmd(tokenizer: str, dataset: str, preset: str, seed: int, device: str, sets: tuple[str, ...],
                  out: Path) -> None:
    """Fit one tokenizer (no backbone), write its codes to OUT and print their statistics."""
    from bench.config import preset_config
    from bench.evaluation.code_stats import code_stats, stats_frame, vocab_codebook_sizes
    from bench.runner import fit_tokenizer
    from bench.tokenizers import parse_tokenizer_list

    spec = parse_tokenizer_list(tokenizer)[0]
    config = preset_config(preset, parse_sets(sets), dataset=dataset, tokenizers=[spec], device=device)
    tok, data = fit_tokenizer(config, spec, seed, log=lambda msg: click.echo(msg, err=True))
    tok.save(out, data.item_ids)
    stats = code_stats(tok.index_json(data.item_ids), vocab_codebook_sizes(tok.vocab))
    # colliding items: those beyond the first of each group sharing a code
    first = "" if tok.collisions_before is None else f"{tok.collisions_before} as first assigned, "
    click.echo(f"{out}: {data.n_items} items; colliding items: {first}{tok.n_collisions} before any numbering suffix")
    click.echo(stats_frame(stats).drop(columns=["n_items", "n_unique", "collision_rate", "max_group"])
               .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
