"""The tuning seed's unit of a `--tuned` run is the chosen trial's model when that trial
trained exactly what the unit would: the trial stopped on validation with the test split
never scored, so evaluating it on test is what retraining it would give, without the cost."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from bench.config import RunConfig, same_settings
from bench.run_files import unit_dir
from bench.tuning import trial_folder


def reuse_trial(config: RunConfig, data_fingerprint: str, variant: Any, seed: int, unit: Path, codes_path: Path,
                log: Callable[[str], None]) -> dict[str, str]:
    """With --tuned, the unit of the tuning seed is the chosen trial's model when that trial
    trained exactly what this unit would (this tokenizer, options, recipe and seed; an
    ablation row that changes none of them, such as LETTER's tau-1 row or a collision table's
    default policy, qualifies under its own label). The trial stopped on validation (no test
    item was visible to it). Its codes and final checkpoint are copied into `unit`, so
    training resumes at its end and only the evaluation (now with test) runs. Returns what
    the unit's `done` file records ({} when nothing is reused)."""
    import shutil

    from bench.runner import CHECKPOINT
    from bench.tokenizers import make_tokenizer

    if not config.tuned or seed != config.tuned["search"]["seed"] or (unit / CHECKPOINT).exists():
        return {}
    study = make_tokenizer(variant.tokenizer, variant.options).label  # what bench tune named it
    chosen = config.tuned["chosen"].get(study)
    if chosen is None:
        return {}
    folder = trial_folder(Path(config.tuned["dir"]), variant.tokenizer, chosen["settings"])
    source = unit_dir(folder, study, seed)
    trial_codes = folder / "codes" / f"{study}-seed{seed}.index.json"
    if not ((source / "done").exists() and (source / CHECKPOINT).exists() and trial_codes.exists()):
        return {}
    if not _same_training(folder / "config.json", config, variant, data_fingerprint):
        if variant.label == study:  # a plain row whose trial differs: worth saying; an ablation row is expected to
            log(f"{variant.label} seed {seed}: tuning trial {folder} was trained under other settings; training anew")
        return {}
    unit.mkdir(parents=True, exist_ok=True)
    codes_path.parent.mkdir(parents=True, exist_ok=True)
    for src, dst in ((trial_codes, codes_path), (trial_codes.with_suffix(".state.json"), codes_path.with_suffix(".state.json")),
                     (source / CHECKPOINT, unit / CHECKPOINT)):
        shutil.copyfile(src, dst)
    log(f"{variant.label} seed {seed}: the model of tuning trial {folder} (chosen on validation)")
    return {"from_tuning_trial": str(folder)}


def _same_training(trial_config: Path, config: RunConfig, variant: Any, data_fingerprint: str) -> bool:
    """The trial's config.json trained what this unit would: same data, split, backbone,
    recipe (with the tuned settings), sizes, embeddings and tokenizer options, compared as a
    resumed run's are (`same_settings`: a field spelled out at its default equals it left out)."""
    try:
        old = json.loads(trial_config.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    new = config.to_dict()
    new["recipe"] = dataclasses.asdict(dataclasses.replace(config.recipe, **variant.recipe))
    new["tokenizer_options"] = {variant.tokenizer.partition(":")[0]: variant.options}
    keys = ("dataset", "preset", "backbone", "recipe", "t5", "causal", "synthetic", "data_options", "sasrec",
            "embedding_model", "tokenizer_options")
    return (all(same_settings(key, old.get(key), new[key]) for key in keys)
            and old.get("data", {}).get("fingerprint") == data_fingerprint and old.get("tokenizers") == [variant.tokenizer])


__all__ = ["reuse_trial"]
