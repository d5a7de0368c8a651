"""The `bench` command line: parse, call, print. Bad input exits with code 2 and one line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import click

from bench.cli_common import parse_seeds, parse_sets, user_errors
from bench.cli_inspect import codes_group, compare_paper_cmd, compare_runs_cmd, data_group, tokenizers_cmd
from bench.errors import BenchError


@click.group()
@click.version_option(package_name="bench")
def main() -> None:
    """Benchmark item tokenizers for generative recommendation."""


def parse_overrides(sets: tuple[str, ...], backbone: str, lora: bool | None) -> dict[str, str]:
    """--set values plus --lora/--no-lora, which only a causal backbone takes."""
    out = parse_sets(sets)
    if lora is not None:
        if not backbone.startswith("causal"):
            raise BenchError("--lora/--no-lora: only for a causal:SPEC backbone")
        out["causal.lora"] = str(lora)
    return out


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `run` and `ablate`."""
    for option in reversed([
        click.option("--dataset", default="synthetic", show_default=True, help="synthetic, ml-100k:PATH, ml-1m:PATH, letter:PATH"),
        click.option("--preset", default="quick", show_default=True, help="quick (tiny, minutes on a laptop), cpu, paper"),
        click.option("--backbone", default="t5", show_default=True,
                     help="t5, or causal:SPEC (tiny-llama, tiny-qwen2, tiny-gpt2, a Hugging Face name or a local folder)"),
        click.option("--lora/--no-lora", default=None, help="causal backbone: LoRA adapters (= --set causal.lora=true)."),
        click.option("--seeds", default="0", show_default=True, help="Comma list, e.g. 0,1,2"),
        click.option("--out", default="", help="Results folder (default results/<data>-<preset>-<backbone>; rerun to resume)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N"),
        click.option("--set", "sets", multiple=True, metavar="SECTION.NAME=VALUE",
                     help="Override a setting, e.g. recipe.tau=0.7, t5.d_model=64, letter.alpha=0. Repeatable."),
        click.option("--embedding-model", default=None,
                     help="Text encoder for item embeddings: a local folder or cached hub name (default: the packaged "
                          "all-MiniLM-L6-v2; LETTER's release used LLaMA-7B, mean-pooled)."),
        click.option("--tuned", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of a `bench tune` run: each tokenizer trains with the settings chosen there on validation."),
        click.option("--reuse-units", "reuse_units", multiple=True, type=click.Path(file_okay=False, path_type=Path),
                     help="A results folder whose finished units stand for units here that would train exactly the "
                          "same (an ablation row equal to a main run's row). Repeatable."),
    ]):
        fn = option(fn)
    return fn


def engine_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """How `run`, `ablate` and `tune` dispatch their units and what they report to; no result changes."""
    for option in reversed([
        click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Units run at once: worker processes (local; on GPUs placed on the visible devices in turn), "
                          "or Slurm array parallelism."),
        click.option("--executor", default="local", show_default=True,
                     help="local, slurm (submitit), or submitit-local (the Slurm path run on this machine)."),
        click.option("--threads-per-job", type=click.IntRange(min=0), default=0, show_default=True,
                     help="CPU threads per local job (0 = cores // jobs)."),
        click.option("--slurm", "slurm", multiple=True, metavar="KEY=VALUE",
                     help="submitit parameter, e.g. partition=gpu, timeout_min=120, gpus_per_node=1. Repeatable."),
        click.option("--tracker", "trackers", multiple=True, metavar="NAME",
                     help="tensorboard, mlflow or wandb (offline, under OUT/trackers). Repeatable."),
    ]):
        fn = option(fn)
    return fn


def start_run(config: Any, jobs: int, executor: str, threads_per_job: int, slurm: tuple[str, ...],
              trackers: tuple[str, ...]) -> None:
    from bench.executor import Dispatch, parse_slurm
    from bench.runner import run

    dispatch = Dispatch(executor, jobs, threads_per_job, parse_slurm(slurm))
    path = run(config, log=lambda msg: click.echo(msg, err=True), dispatch=dispatch, trackers=list(trackers))
    echo_result(path)


@main.command("run")
@click.option("--tokenizers", default="all", show_default=True,
              help="Comma list of tokenizer specs (id, text, tiger, letter, precomputed:PATH) or `all`.")
@click.option("--reference", default=None, help="Tokenizer the others are tested against (default letter, if run).")
@run_options
@engine_options
@user_errors
def run_cmd(tokenizers: str, reference: str | None, dataset: str, preset: str, backbone: str, lora: bool | None,
            seeds: str, out: str, device: str, sets: tuple[str, ...], embedding_model: str | None, tuned: Path | None,
            reuse_units: tuple[Path, ...], **engine: Any) -> None:
    """Train and evaluate each tokenizer with the same backbone and recipe."""
    config = make_config(tokenizers, dataset, preset, backbone, lora, seeds, out, device, sets, tuned, reference=reference,
                         embedding_model=embedding_model, reuse_units=results_folders(reuse_units))
    start_run(config, **engine)


def results_folders(folders: tuple[Path, ...]) -> list[str]:
    """--reuse-units folders, each checked to be a results folder."""
    for folder in folders:
        if not (folder / "config.json").is_file():
            raise BenchError(f"--reuse-units {folder}: not a results folder (no config.json)")
    return [str(folder) for folder in folders]


def make_config(tokenizers: str, dataset: str, preset: str, backbone: str, lora: bool | None, seeds: str, out: str,
                device: str, sets: tuple[str, ...], tuned: Path | None = None, **fields: Any) -> Any:
    """The RunConfig of `run`, `ablate` and `tune` from their shared options."""
    from bench.config import preset_config
    from bench.tokenizers import parse_tokenizer_list

    specs = parse_tokenizer_list(tokenizers)
    explicit = [s.strip() for s in tokenizers.split(",") if s.strip() and s.strip() != "all"]
    config = preset_config(preset, parse_overrides(sets, backbone, lora), dataset=dataset, tokenizers=specs,
                           explicit_tokenizers=explicit, seeds=parse_seeds(seeds), backbone=backbone, device=device,
                           out=out, **fields)
    if tuned is not None:
        from bench.tuning import load_tuned

        config.tuned = load_tuned(tuned, config)
    return config


def echo_result(path: object) -> None:
    """The results line, once: under `accelerate launch` only process 0 prints it."""
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"results: {path}")


@main.command("ablate")
@click.argument("study", type=click.Choice(["letter", "collisions"]))
@click.option("--tokenizers", default="tiger,rqkmeans", show_default=True,
              help="collisions: the tokenizers whose collision policies are compared.")
@run_options
@engine_options
@user_errors
def ablate_cmd(study: str, tokenizers: str, dataset: str, preset: str, backbone: str, lora: bool | None, seeds: str,
               out: str, device: str, sets: tuple[str, ...], embedding_model: str | None, tuned: Path | None,
               reuse_units: tuple[Path, ...], **engine: Any) -> None:
    """letter: LETTER without each of its losses, against the full model. collisions: each
    tokenizer under every collision policy (suffix, keep, sinkhorn, reassign). Same data, split,
    seeds and backbone."""
    from bench.ablation import collision_ablation, letter_ablation
    from bench.runner import default_out

    names = "letter" if study == "letter" else tokenizers
    config = make_config(names, dataset, preset, backbone, lora, seeds, out, device, sets, tuned,
                         embedding_model=embedding_model, reuse_units=results_folders(reuse_units))
    config = letter_ablation(config) if study == "letter" else collision_ablation(config)
    if not out:
        config.out = str(default_out(config)) + f"-ablate-{study}"
    start_run(config, **engine)


@main.command("tune")
@click.option("--tokenizers", default="all", show_default=True, help="Comma list of tokenizer specs or `all`.")
@click.option("--space", multiple=True, metavar="recipe.NAME=V1,V2",
              help="Search space (repeatable); default: the preset's (bench/config.py TUNE_SPACES).")
@click.option("--trials", type=click.IntRange(min=0), default=0, show_default=True,
              help="Trials per tokenizer (0 = the whole grid).")
@click.option("--sampler", default="grid", show_default=True, help="grid (every combination) or tpe (Optuna's TPE).")
@run_options
@engine_options
@user_errors
def tune_cmd(tokenizers: str, space: tuple[str, ...], trials: int, sampler: str, dataset: str, preset: str, backbone: str,
             lora: bool | None, seeds: str, out: str, device: str, sets: tuple[str, ...], embedding_model: str | None,
             tuned: Path | None, reuse_units: tuple[Path, ...], jobs: int, executor: str, threads_per_job: int,
             slurm: tuple[str, ...], trackers: tuple[str, ...]) -> None:
    """Choose recipe settings per tokenizer on validation only (the test split is never scored)."""
    from bench.config import TUNE_SPACES
    from bench.runner import default_out
    from bench.tuning import parse_space, tune

    if tuned is not None or reuse_units:
        raise BenchError(f"bench tune takes no {'--tuned' if tuned is not None else '--reuse-units'}")
    config = make_config(tokenizers, dataset, preset, backbone, lora, seeds, out, device, sets,
                         embedding_model=embedding_model)
    folder = Path(out) if out else Path(str(default_out(config)) + "-tune")
    chosen_space = parse_space(space) if space else TUNE_SPACES[preset]
    from bench.tuning import summary_table

    from bench.executor import Dispatch, parse_slurm

    dispatch = Dispatch(executor, jobs, threads_per_job, parse_slurm(slurm))
    path = tune(config, chosen_space, folder, trials, sampler, log=lambda msg: click.echo(msg, err=True),
                dispatch=dispatch, trackers=trackers)
    click.echo(summary_table(path).to_string(index=False))
    click.echo(f"tuned: {path}")


@main.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--reference", default=None, help="Tokenizer to test against (default: letter, else the first).")
@user_errors
def report_cmd(run_dir: Path, reference: str | None) -> None:
    """Rebuild code_stats.csv, significance.csv, plots/ and report.md of RUN_DIR from its files."""
    from bench.evaluation.significance import SignificanceOptions
    from bench.reporting.report import build_report

    options = SignificanceOptions(reference=reference) if reference else None
    click.echo(str(build_report(run_dir, options)))


@main.command("supersede")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("names", nargs=-1, required=True)
@click.option("--why", required=True, help="Why the results are set aside (kept in superseded.csv and the report).")
@click.option("--drop-codes", is_flag=True, help="Run folder: also delete the units' codes (when the codes changed).")
@user_errors
def supersede_cmd(folder: Path, names: tuple[str, ...], why: str, drop_codes: bool) -> None:
    """Set finished results aside so that a rerun trains them again: units (LABEL-seedN) of a run
    folder or trials (TOKENIZER:NUMBER) of a tuning folder. Their figures and --why go into
    FOLDER/superseded.csv; rerun the same bench run / tune afterwards, then bench report."""
    from bench.superseding import supersede

    for row in supersede(folder, list(names), why, drop_codes):
        click.echo("superseded: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "why"))


@main.command("plot")
@click.argument("run_dir", type=click.Path(path_type=Path))
@user_errors
def plot_cmd(run_dir: Path) -> None:
    """Redraw the plots of RUN_DIR from its saved files."""
    from bench.reporting.report import build_plots

    for path in build_plots(run_dir):
        click.echo(str(path))


@main.command("perf")
@click.option("--dataset", default=None, help="Data set spec (default letter:../shared/data/letter/Instruments).")
@click.option("--tokenizer", default=None, help="Codes to decode (default: precomputed, the data set's own index.json).")
@click.option("--size", default="paper", show_default=True, help="T5 size of this preset: quick, cpu, paper.")
@click.option("--users", type=int, default=None, help="Test users decoded per repeat [1000; --quick 64].")
@click.option("--hf-users", type=int, default=None, help="Of those, decoded by transformers' generate too [100; --quick 8].")
@click.option("--steps", type=int, default=None, help="Timed training steps, the same batches each repeat [40; --quick 3].")
@click.option("--pretrain-steps", type=int, default=None, help="Training steps before decoding [50; --quick 0].")
@click.option("--repeats", type=int, default=None, help="Repeats per measurement [3; --quick 1].")
@click.option("--letter-epochs", type=int, default=None, help="LETTER epochs timed [3; --quick 1].")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Training batch size.")
@click.option("--eval-batch-size", type=int, default=0, show_default=True, help="Users per beam-search batch (0 = the recipe's).")
@click.option("--beam", type=int, default=20, show_default=True)
@click.option("--threads", default="1", show_default=True, help="Comma list of torch thread counts to measure, e.g. 1,2.")
@click.option("--input-budgets", default="0", show_default=True,
              help="Comma list of history budgets in tokens (recipe.max_input_tokens; 0 = none), training timed at each.")
@click.option("--parts", default="eval,hf,train,tokenizer", show_default=True, help="Which parts to measure.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda")
@click.option("--quick", is_flag=True, help="Short version for smoke tests (few users and steps, one repeat).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table and its context as JSON.")
@user_errors
def perf_cmd(quick: bool, json_path: Path | None, **kwargs: Any) -> None:
    """Speed of evaluation (ours vs transformers generate), training and the LETTER tokenizer."""
    from bench.io import atomic_write_text
    from bench.options import make_options
    from bench.perf import QUICK, PerfOptions, run_perf

    values = dict(QUICK) if quick else {}
    values.update({k: v for k, v in kwargs.items() if v is not None})
    report = run_perf(make_options(PerfOptions, values, "perf"), log=lambda m: click.echo(m, err=True))
    click.echo(report.table())
    if json_path is not None:
        atomic_write_text(json_path, report.to_json())


for command in (compare_paper_cmd, compare_runs_cmd, tokenizers_cmd, data_group, codes_group):
    main.add_command(command)

if __name__ == "__main__":
    main()
