"""Units that need not be trained again, because a finished model already trained exactly
what they would: the chosen tuning trial (for the tuning seed of a `--tuned` run), and a
finished unit of another run folder (`--reuse-units`; an ablation's row that equals a main
run's row, such as LETTER's tau-1 row). "Exactly" means
the same data, split, backbone, sizes, effective recipe, tokenizer, tokenizer options and
seed, compared as a resumed run's settings are (`same_settings`). A tokenizer's options are
also recorded resolved, defaults included (`resolved_options`), so a record written since then
no longer matches once a default changes; older records, without them, compare the options
they set."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from bench.config import RunConfig, same_settings
from bench.io import atomic_write_csv, atomic_write_text
from bench.results import RESULT_FILES
from bench.run_files import unit_dir
from bench.tuning import trial_folder

TRAINING_FILE = "training.json"  # a finished unit's training settings, what --reuse-units compares
_KEYS = ("dataset", "preset", "backbone", "recipe", "t5", "causal", "synthetic", "data_options", "sasrec",
         "embedding_model", "tokenizer_options")
CODE_KEYS = tuple(key for key in _KEYS if key not in ("recipe", "t5"))  # what a tokenizer's fit can depend on


def training_settings(config: RunConfig, variant: Any, seed: int, data_fingerprint: str) -> dict[str, Any]:
    """What a unit of `variant` and `seed` trains: the run's settings with the variant's recipe
    overrides (tuned settings included) and its tokenizer options, the data and the seed."""
    out = {key: value for key, value in config.to_dict().items() if key in _KEYS}
    out["recipe"] = dataclasses.asdict(dataclasses.replace(config.recipe, **variant.recipe))
    name = variant.tokenizer.partition(":")[0]
    out["tokenizer_options"] = {name: variant.options}
    out["resolved_options"] = {name: resolved_options(name, variant.options)}
    out.update(tokenizers=[variant.tokenizer], seed=seed, data={"fingerprint": data_fingerprint})
    return out


def resolved_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A tokenizer's options with every default filled in, as JSON values."""
    from bench.options import make_options
    from bench.tokenizers import TOKENIZERS

    return json.loads(json.dumps(dataclasses.asdict(make_options(TOKENIZERS[name].Options, options, name)), default=str))


def same_resolved(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The resolved tokenizer options agree, or one side predates them."""
    return "resolved_options" not in old or "resolved_options" not in new or (
        json.dumps(old["resolved_options"], sort_keys=True) == json.dumps(new["resolved_options"], sort_keys=True))


def same_training(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...] = _KEYS) -> bool:
    """`old` (a trial's config.json, whose seed the caller checks, or a unit's training.json)
    trained what `new` would; with keys=CODE_KEYS, fitted the codes `new` would. Where both
    record resolved options (defaults included), those must agree too."""
    return (same_resolved(old, new) and all(same_settings(key, old.get(key), new[key]) for key in keys)
            and old.get("data", {}).get("fingerprint") == new["data"]["fingerprint"]
            and old.get("tokenizers") == new["tokenizers"] and old.get("seed", new["seed"]) == new["seed"])


def write_training(unit: Path, settings: dict[str, Any]) -> None:
    atomic_write_text(unit / TRAINING_FILE, json.dumps(settings, indent=1, default=str))


def reuse_trial(config: RunConfig, settings: dict[str, Any], variant: Any, unit: Path, codes_path: Path,
                codes_here: Path | None, log: Callable[[str], None]) -> dict[str, str]:
    """With --tuned, the unit of the tuning seed is the chosen trial's model when that trial
    trained exactly what this unit would (`settings`, from `training_settings`), under any
    label, and with the codes this folder already gives these tokenizer settings (`codes_here`,
    if any). The trial stopped on validation (no test item was visible to it). Its codes and
    final checkpoint are copied into `unit`, so training resumes at its end and only the
    evaluation (now with test) runs. Returns what the unit's `done` file records ({} when
    nothing is reused)."""
    from bench.runner import CHECKPOINT
    from bench.tokenizers import make_tokenizer

    seed = settings["seed"]
    if not config.tuned or seed != config.tuned["search"]["seed"] or (unit / CHECKPOINT).exists():
        return {}
    study = make_tokenizer(variant.tokenizer, variant.options).label  # what bench tune named it
    chosen = config.tuned["chosen"].get(study)
    if chosen is None:
        return {}
    folder = trial_folder(Path(config.tuned["dir"]), variant.tokenizer, chosen["settings"])
    source = unit_dir(folder, study, seed)
    trial_codes = folder / "codes" / f"{study}-seed{seed}.index.json"
    if not ((source / "done").exists() and (source / CHECKPOINT).exists() and _agrees(trial_codes, codes_here)):
        return {}
    # the trial's config.json predates resolved options; its unit's training.json has them since
    if not (same_training(read_settings(folder / "config.json"), settings)
            and same_resolved(read_settings(source / TRAINING_FILE), settings)):
        if variant.label == study:  # a plain row whose trial differs: worth saying; an ablation row is expected to
            log(f"{variant.label} seed {seed}: tuning trial {folder} was trained under other settings; training anew")
        return {}
    unit.mkdir(parents=True, exist_ok=True)
    copy_codes(trial_codes, codes_path)
    shutil.copyfile(source / CHECKPOINT, unit / CHECKPOINT)
    log(f"{variant.label} seed {seed}: the model of tuning trial {folder} (chosen on validation)")
    return {"from_tuning_trial": str(folder)}


def reuse_unit(sources: list[str], settings: dict[str, Any], label: str, unit: Path, codes_path: Path,
               codes_here: Path | None, log: Callable[[str], None]) -> bool:
    """A finished unit of one of the run folders `sources` that trained exactly what this
    unit would (its training.json equals `settings`), with the codes this folder already
    gives these tokenizer settings (`codes_here`, if any), becomes this unit: its codes and
    its files, rows relabelled, with `from_unit` in `done` (written last). Its test scores
    are already in it, so nothing is trained or evaluated. False when none qualifies."""
    for other, other_codes, trained in _finished_units(sources, settings["seed"]):
        if not (_agrees(other_codes, codes_here) and same_training(trained, settings)):
            continue
        unit.mkdir(parents=True, exist_ok=True)
        copy_codes(other_codes, codes_path)
        for name in RESULT_FILES:  # each row carries the label
            if (other / name).exists():  # rankings.csv is not kept in committed results
                frame = pd.read_csv(other / name, dtype=str, keep_default_na=False)  # values kept as written
                atomic_write_csv(unit / name, frame.assign(tokenizer=label))
        write_training(unit, settings)
        atomic_write_text(unit / "done", json.dumps({**read_settings(other / "done"), "from_unit": str(other)}))
        log(f"{label} seed {settings['seed']}: the finished unit {other} (the same training)")
        return True
    return False


def source_codes(sources: list[str], settings: dict[str, Any]) -> Path | None:
    """Codes a finished unit of the run folders `sources` fitted with the tokenizer settings
    of `settings` (whatever its backbone's recipe): taken instead of fitting again, so an
    ablation's rows share the main run's codes (a fit repeats bit for bit only on one machine)."""
    for _, codes, trained in _finished_units(sources, settings["seed"]):
        if codes.with_suffix(".state.json").exists() and same_training(trained, settings, CODE_KEYS):
            return codes
    return None


def _finished_units(sources: list[str], seed: int) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """Each finished unit of `seed` in the run folders `sources`: its folder, its codes and what
    it trained (its training.json; {} for a unit written before that file existed)."""
    for source in map(Path, sources):
        for unit in sorted((source / "units").glob(f"*-seed{seed}")):
            if (unit / "done").exists():
                yield unit, source / "codes" / f"{unit.name}.index.json", read_settings(unit / TRAINING_FILE)


def copy_codes(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    for a, b in ((src, dst), (src.with_suffix(".state.json"), dst.with_suffix(".state.json"))):
        shutil.copyfile(a, b)


def _agrees(codes: Path, codes_here: Path | None) -> bool:
    """`codes` exist and equal `codes_here`, the codes this folder already uses (None: any)."""
    return codes.exists() and (codes_here is None or codes.read_bytes() == codes_here.read_bytes())


def read_settings(path: Path) -> dict[str, Any]:
    """A JSON settings file, or {} when it is missing or unreadable (then nothing matches)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["CODE_KEYS", "TRAINING_FILE", "copy_codes", "read_settings", "reuse_trial", "reuse_unit", "same_training",
           "source_codes", "training_settings", "write_training"]
