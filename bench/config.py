"""Typed, validated run configuration and the named presets (quick, cpu, paper)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from bench.datasets import SyntheticSpec
from bench.errors import BenchError
from bench.options import check, make_options

PRESETS = ("quick", "cpu", "paper")


@dataclass
class T5Size:
    """T5 encoder-decoder trained from scratch; `paper` is LETTER-TIGER's size."""

    num_layers: int = 4
    num_decoder_layers: int = 4
    d_model: int = 128
    d_ff: int = 1024
    num_heads: int = 6
    d_kv: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(min(self.num_layers, self.num_decoder_layers, self.d_model, self.d_ff, self.num_heads, self.d_kv) > 0,
              "model sizes must be positive")
        check(0 <= self.dropout < 1, "dropout must be in [0, 1)")


@dataclass
class CausalOptions:
    """Decoder-only LM backbone (`causal:SPEC`, LC-Rec setting)."""

    lora: bool = False  # LoRA adapters (peft); embeddings and head stay fully trainable
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    train_prompt: bool = False  # loss on prompt and padding too, as LC-Rec's release did
    gradient_checkpointing: bool = False  # for large models
    hidden: int = 64  # named tiny configs only (tiny-llama, tiny-qwen2, tiny-gpt2)
    layers: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        check(self.lora_r > 0 and self.lora_alpha > 0, "lora_r and lora_alpha must be > 0")
        check(0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)")
        check(min(self.hidden, self.layers, self.heads) > 0, "hidden, layers, heads must be > 0")
        check(self.hidden % self.heads == 0, "hidden must be a multiple of heads")


@dataclass
class Recipe:
    """The training and decoding recipe shared by every tokenizer in a run."""

    lr: float = 5e-4  # DESIGN 6: 5e-4 for t5, 1e-4 for causal
    weight_decay: float = 0.01
    warmup_ratio: float = 0.01
    # cosine: decays to 0 at the epoch cap (LETTER-TIGER); constant: warm-up, then flat, so the
    # cap is only a safety net and patience on validation ends training
    schedule: str = "cosine"
    batch_size: int = 256
    epochs: int = 200  # the cap: training stops here if patience has not stopped it
    # the schedule's length in epochs, when a constant rate is to outlast it (0 = `epochs`):
    # the warm-up is `warmup_ratio` of it, so the cap can be raised without changing the
    # schedule, and a folder made under a lower cap resumes under a higher one
    # (`setting_differences`); a cosine rate always ends at the cap
    schedule_epochs: int = 0
    samples_per_epoch: int = 0  # 0 = every training sample; else a fresh random subset each epoch
    patience: int = 10  # evaluations without a better validation score before stopping
    # epochs before patience may end training (0 = none): validation of a young model dips for
    # several epochs while it still improves, and patience alone would take such a dip for the end
    min_epochs: int = 0
    # the validation score that stops training and picks the restored epoch: ndcg (NDCG@10 of
    # a constrained beam search) or loss (the teacher-forced training loss on the validation
    # targets, as LETTER-TIGER's Hugging Face Trainer; a forward pass, no beams)
    stop_on: str = "ndcg"
    eval_every: int = 1  # epochs between validation evaluations
    valid_users: int = 0  # validation users scored for early stopping; 0 = all
    tau: float = 1.0  # LETTER's ranking-guided loss: CE(logits / tau); 1 = plain CE
    beam: int = 20
    # finished items rank by sum(log p) / length ** length_penalty, as Hugging Face's beam search
    # (default 1.0), which P5, BIGRec and LETTER evaluate with; no effect on fixed-length codes
    length_penalty: float = 1.0
    eval_batch_size: int = 64  # users per beam-search batch
    max_grad_norm: float = 1.0
    # item tokens of history the model reads (oldest whole items dropped beyond it); 0 = all
    # of the last 20 items. Binds only for long codes: titles (~9 tokens each) on the cpu preset
    max_input_tokens: int = 0

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr must be > 0")
        check(self.weight_decay >= 0, "weight_decay must be >= 0")
        check(0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)")
        check(self.batch_size > 0 and self.epochs > 0 and self.eval_every > 0, "batch_size, epochs, eval_every must be > 0")
        check(self.patience > 0, "patience must be > 0")
        check(self.min_epochs >= 0, "min_epochs must be >= 0 (0 = none)")
        check(self.schedule_epochs >= 0, "schedule_epochs must be >= 0 (0 = epochs)")
        check(self.schedule_epochs == 0 or self.schedule == "constant",
              "schedule_epochs needs schedule=constant (a cosine rate ends at the cap): set it to 0")
        check(self.valid_users >= 0, "valid_users must be >= 0")
        check(self.samples_per_epoch >= 0, "samples_per_epoch must be >= 0")
        check(self.tau > 0, "tau must be > 0")
        check(self.beam >= max(KS), f"beam must be >= the largest K ({max(KS)})")
        check(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        check(self.stop_on in STOP_SCORES, f"stop_on must be one of {', '.join(STOP_SCORES)}")
        check(self.eval_batch_size > 0, "eval_batch_size must be > 0")
        check(self.max_input_tokens >= 0, "max_input_tokens must be >= 0 (0 = no budget)")


def schedule_length(recipe: Recipe | dict[str, Any]) -> int:
    """The epochs the learning-rate schedule spans, of a recipe or of its saved form (a dict,
    which may predate `schedule_epochs`)."""
    values = dataclasses.asdict(recipe) if isinstance(recipe, Recipe) else recipe
    return int(values.get("schedule_epochs") or values.get("epochs") or 0)


KS = (5, 10, 20)
SCHEDULES = ("cosine", "constant")
STOP_SCORES = ("ndcg", "loss")
SPLITS = ("leave-one-out", "temporal")
CF_SOURCES = ("train", "shipped")


@dataclass
class DataOptions:
    """How the data set is split and what interaction-fitted side data may be used."""

    # leave-one-out (TIGER, LETTER, P5) or a global temporal split (Ji et al. 2023; Cornac's
    # NextItemEvaluation.from_timestamps): train before one cut-off, validation and test after
    split: str = "leave-one-out"
    temporal_valid: float = 0.1  # temporal: share of all interactions (the latest) past the first cut-off
    temporal_test: float = 0.05  # temporal: share of all interactions (the latest) past the second cut-off
    # train: SASRec fitted on the training split (default); shipped: the data set's own CF
    # embeddings (e.g. LETTER's X-32d-sasrec.pt), whose training split is unknown: external
    cf_embeddings: str = "train"

    def __post_init__(self) -> None:
        check(self.split in SPLITS, f"split must be one of {', '.join(SPLITS)}")
        check(0 < self.temporal_test < self.temporal_valid < 1,
              "temporal_test and temporal_valid must satisfy 0 < temporal_test < temporal_valid < 1")
        check(self.cf_embeddings in CF_SOURCES, f"cf_embeddings must be one of {', '.join(CF_SOURCES)}")

_PRESET_RECIPES: dict[str, dict[str, Any]] = {
    # quick: `make run`, every tokenizer on 700 synthetic users. Constant lr, patience 2 and a cap
    # of 30 passes, so that patience and not the cap ends training, the protocol's rule as in
    # `cpu`. The earlier cap of 3 cosine passes ended every unit while validation NDCG@10 was still
    # rising (id .242 .264 .273, tiger .218 .241 .263); with patience the best validation epochs
    # were 6-18 (actionpiece .219 -> .289, id .273 -> .332), and at a cap of 20 opq still improved
    # at its last pass. make run: 11.7 min, 19.8 core-minutes on 2 cores (328 s before).
    "quick": {"lr": 3e-3, "schedule": "constant", "epochs": 30, "patience": 2, "valid_users": 200,
              "batch_size": 128},
    # cpu: real data on 2 CPU cores. lr and weight decay are chosen per tokenizer by `bench tune`
    # on validation (TUNE_SPACES below; `bench run --tuned DIR`); untuned, lr 1e-3 (P5's) and the
    # paper's weight decay 0.01 apply. No decay of the learning rate after a warm-up of 1 % of
    # 40 passes (`schedule_epochs`), and patience 4 on all validation users (a tenth of those 40,
    # the release's ratio of 20 to 200: validation NDCG@10 on 943 users dips for an epoch or two
    # by ~.005-.008, which patience 2 mistook for the end): training ends when validation stops
    # improving, not at the cap (each unit records which). The cap is 200 passes (the release's),
    # not tuned: it must not bind. It was 40 until the random-code control's first search trial
    # still improved at pass 37 (validation NDCG@10 .0573, its best); every unit finished before
    # then had stopped by patience by pass 31, so none changed. min_epochs 10 (a quarter of the
    # 40): patience cannot end training before epoch 10. LETTER's validation NDCG@10 fell for
    # four epochs after a peak at epoch 3 and then rose past it (lr 3e-3/wd 0.1 trial: .050 at
    # 3, .045 .039 .048, .052 at 7, .057 at 9), so patience 4 ended two LETTER units at epoch 7
    # on such a dip, one of them on the very settings whose search trial rose to its best at
    # epoch 11; every other unit trained at least 13 epochs (validation curves in
    # results/tune-ml100k-cpu and results/reference-protocol).
    # max_input_tokens 100: the full 20-item history of every
    # code of at most 5 tokens (id, tiger, letter); titles (~9 tokens with <sep> on ML-100K) keep
    # their last ~10 items, which makes a text training step 4.3x cheaper (`bench perf
    # --input-budgets 0,100`)
    "cpu": {"lr": 1e-3, "weight_decay": 0.01, "schedule": "constant", "epochs": 200, "schedule_epochs": 40,
            "samples_per_epoch": 0, "patience": 4, "min_epochs": 10, "valid_users": 0, "batch_size": 128,
            "max_input_tokens": 100},
    # paper: LETTER-TIGER's release (run_train.sh, finetune.py): an effective batch of 1024
    # (256 per device x 2 GPUs x 2 accumulation steps), lr 5e-4, AdamW with weight decay 0.01,
    # cosine schedule with 1 % warm-up, up to 200 epochs, early stopping with patience 20 on
    # the validation loss (Trainer's default metric), the best epoch restored
    "paper": {"lr": 5e-4, "weight_decay": 0.01, "schedule": "cosine", "warmup_ratio": 0.01, "epochs": 200,
              "patience": 20, "stop_on": "loss", "valid_users": 0, "batch_size": 1024, "eval_batch_size": 256},
}
# `bench tune`'s search space per preset: the same for every tokenizer (equal budgets).
# cpu: a 2 x 2 grid around the a priori values (P5's lr 1e-3, the paper's weight decay 0.01)
TUNE_SPACES: dict[str, dict[str, list[Any]]] = {
    "quick": {"recipe.lr": [1e-3, 3e-3]},
    "cpu": {"recipe.lr": [1e-3, 3e-3], "recipe.weight_decay": [0.01, 0.1]},
    "paper": {"recipe.lr": [5e-4, 1e-3], "recipe.weight_decay": [0.01, 0.1]},
}
_PRESET_T5: dict[str, dict[str, Any]] = {
    "quick": {"num_layers": 2, "num_decoder_layers": 2, "d_model": 64, "d_ff": 256, "num_heads": 4, "d_kv": 16},
    # cpu: as small as quick's; d_model 96 cost 1.4x more per sample and learnt no faster on ML-100K
    "cpu": {"num_layers": 2, "num_decoder_layers": 2, "d_model": 64, "d_ff": 256, "num_heads": 4, "d_kv": 16},
    "paper": {},
}
# causal: DESIGN 6's 1e-4 is for fine-tuning a pretrained LM (paper); the quick and cpu presets
# train tiny random LMs from scratch in a few epochs, so they keep their t5-sized rates
_PRESET_CAUSAL_LR = {"quick": 2e-3, "cpu": 1e-3, "paper": 1e-4}
_PRESET_SYNTHETIC: dict[str, SyntheticSpec] = {
    "quick": SyntheticSpec(n_items=400, n_users=700),
    "cpu": SyntheticSpec(n_items=1500, n_users=4000),
    "paper": SyntheticSpec(n_items=10000, n_users=25000),
}


@dataclass
class RunConfig:
    dataset: str = "synthetic"
    tokenizers: list[str] = field(default_factory=lambda: ["id"])
    explicit_tokenizers: list[str] = field(default_factory=list)  # named by the user, not via `all`
    preset: str = "quick"
    seeds: list[int] = field(default_factory=lambda: [0])
    backbone: str = "t5"
    device: str = "auto"
    out: str = ""
    recipe: Recipe = field(default_factory=Recipe)
    t5: T5Size = field(default_factory=T5Size)
    causal: CausalOptions = field(default_factory=CausalOptions)
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    data_options: DataOptions = field(default_factory=DataOptions)  # `--set data.NAME=VALUE`
    tokenizer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    sasrec: dict[str, Any] = field(default_factory=dict)  # SASRec options (CF signal and reference row)
    embedding_model: str | None = None  # None = the packaged all-MiniLM-L6-v2
    # Several rows of one tokenizer with other settings (ablations): dicts with label,
    # tokenizer, options (tokenizer options) and recipe (overrides). Empty = one per tokenizer.
    variants: list[dict[str, Any]] = field(default_factory=list)
    ablation: dict[str, str] = field(default_factory=dict)  # label -> what the variant removes
    reference: str | None = None  # significance reference; None = letter when present
    # rows tested against another row than `reference` (a collision table's policies against
    # their own tokenizer's `suffix` row)
    references: dict[str, str] = field(default_factory=dict)
    # settings chosen by `bench tune` (the folder, and per tokenizer its recipe overrides)
    tuned: dict[str, Any] = field(default_factory=dict)
    # run folders whose finished units stand for units here that would train exactly the same
    reuse_units: list[str] = field(default_factory=list)
    # a folder whose codes/ every unit shares, one fit per tokenizer settings and seed
    # (bench tune: the search folder, so all its trials train on one fit; bench/codes_store.py)
    codes_store: str = ""

    def options_for(self, spec: str) -> dict[str, Any]:
        """The options of the tokenizer `spec` names (`precomputed:PATH` -> precomputed's)."""
        return self.tokenizer_options.get(spec.partition(":")[0], {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preset_config(preset: str, overrides: dict[str, str] | None = None, **fields: Any) -> RunConfig:
    """A RunConfig for `preset`, with `--set` style overrides: `recipe.tau=0.7`,
    `t5.d_model=64`, `causal.lora=true`, `letter.alpha=0` (tokenizer options). A causal
    backbone gets its own preset lr unless recipe.lr is set."""
    if preset not in PRESETS:
        raise BenchError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    recipe = dict(_PRESET_RECIPES[preset])
    t5 = dict(_PRESET_T5[preset])
    causal: dict[str, Any] = {}
    data: dict[str, Any] = {}
    if str(fields.get("backbone", "")).startswith("causal"):
        recipe["lr"] = _PRESET_CAUSAL_LR[preset]
    tok_options = default_tokenizer_options(preset)
    synthetic = dataclasses.asdict(_PRESET_SYNTHETIC[preset])
    from bench.embeddings.sasrec import PRESET_OPTIONS as SASREC_PRESETS

    sasrec = dataclasses.asdict(SASREC_PRESETS[preset])
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name:
            raise BenchError(f"--set {key}={value}: expected SECTION.NAME=VALUE (e.g. recipe.tau=0.7)")
        if section == "recipe":
            recipe[name] = value
        elif section == "t5":
            t5[name] = value
        elif section == "causal":
            causal[name] = value
        elif section == "synthetic":
            synthetic[name] = value
        elif section == "data":
            data[name] = value
        elif section == "sasrec":
            sasrec[name] = value
        else:
            from bench.tokenizers import TOKENIZERS

            if section not in TOKENIZERS:
                raise BenchError(f"--set {key}: unknown section {section!r} (recipe, t5, causal, data, synthetic, sasrec or a tokenizer name)")
            tok_options.setdefault(section, {})[name] = value
    return RunConfig(
        preset=preset,
        recipe=make_options(Recipe, recipe, "recipe"),
        t5=make_options(T5Size, t5, "t5"),
        causal=make_options(CausalOptions, causal, "causal"),
        synthetic=make_options(SyntheticSpec, synthetic, "synthetic"),
        data_options=make_options(DataOptions, data, "data"),
        tokenizer_options=tok_options,
        sasrec=dataclasses.asdict(sasrec_options(sasrec)),
        **fields,
    )


def default_tokenizer_options(preset: str) -> dict[str, dict[str, Any]]:
    """Each tokenizer module may declare PRESET_OPTIONS = {preset: {option: value}}."""
    import sys

    from bench.tokenizers import TOKENIZERS

    out = {}
    for name, cls in TOKENIZERS.items():
        per_preset = getattr(sys.modules[cls.__module__], "PRESET_OPTIONS", {})
        out[name] = dict(per_preset.get(preset, {}))
    return out


def sasrec_options(values: dict[str, Any]) -> Any:
    from bench.embeddings.sasrec import Options

    return make_options(Options, values, "sasrec")


def _defaults(section: str, tokenizer: str | None = None) -> dict[str, Any]:
    """Each field's default value in one section of the settings (JSON form)."""
    from bench.embeddings.sasrec import Options as SasrecOptions
    from bench.tokenizers import TOKENIZERS

    classes = {"recipe": Recipe, "t5": T5Size, "causal": CausalOptions, "synthetic": SyntheticSpec,
               "sasrec": SasrecOptions, "data_options": DataOptions}
    cls = TOKENIZERS[tokenizer].Options if tokenizer in TOKENIZERS else classes.get(section)
    if cls is None or not dataclasses.is_dataclass(cls):
        return {}
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return json.loads(json.dumps(out, default=str))


def same_settings(section: str, old: Any, new: Any) -> bool:
    """Whether settings saved by an earlier version of the suite (`old`) equal this run's.
    A field added since (absent in `old`) counts as equal at its default, and under
    `tokenizer_options` only tokenizers both know are compared, so a folder made before a
    tokenizer or an option existed is resumed; any other difference is another setting."""
    return not setting_differences(section, old, new)


def setting_differences(section: str, old: Any, new: Any) -> list[str]:
    """What differs between saved settings (`old`) and this run's (`new`), one entry per
    field as `name: OLD there, NEW here` (empty when `same_settings`), so that an error can
    say which setting stops a folder from being resumed. A higher epoch cap over the same
    schedule (`schedule_epochs`) is no difference: a unit that patience stopped under the lower
    cap trained exactly what it would now, and a unit still training goes on to the new cap;
    one the old cap stopped stays as it finished, and the report flags it."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if _same(old, new) else [f"{_shown(old)} there, {_shown(new)} here"]
    if section == "tokenizer_options":
        return [f"{name}.{d}" for name in sorted(set(old) & set(new))
                for d in _field_differences(old[name], new[name], _defaults("tokenizer", name))]
    if (section == "recipe" and "epochs" in old and "epochs" in new and new["epochs"] >= old["epochs"]
            and schedule_length(new) == schedule_length(old)):  # a raised cap
        new = {**new, "epochs": old["epochs"], "schedule_epochs": old.get("schedule_epochs", 0)}
    return _field_differences(old, new, _defaults(section))


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _same(a: Any, b: Any) -> bool:
    return _shown(a) == _shown(b)


def _field_differences(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    # a field that no longer exists: its setting may have meant something
    out = [f"{k}: {_shown(old[k])} there, no longer a setting" for k in sorted(set(old) - set(new))]
    for k, v in new.items():
        if k in old and not _same(old[k], v):
            out.append(f"{k}: {_shown(old[k])} there, {_shown(v)} here")
        elif k not in old and not (k in defaults and _same(defaults[k], v)):
            was = f"absent (default {_shown(defaults[k])})" if k in defaults else "absent"
            out.append(f"{k}: {was} there, {_shown(v)} here")
    return out
