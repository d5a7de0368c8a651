"""`bench tune`: settings chosen on validation only, with the same search for every tokenizer.

Each tokenizer gets its own Optuna study over the same search space, with the same sampler,
seed and number of trials (equal budgets). A trial is an ordinary run of one tokenizer and
one seed with the trial's settings, in `DIR/trials/<label>-<settings hash>/`, made in
validation-only mode: the split's test part is removed before anything is fitted, so no test
item is ever scored (or even visible) while settings are chosen. Trials resume like runs, and
the Optuna journal (`DIR/optuna.journal`) lets a rerun, or a second process working on other
tokenizers of the same folder, continue the studies. A lock per tokenizer keeps two processes
from running the same study at once.

Outputs: `tuning.csv` (one row per trial: tokenizer, trial, settings as JSON, validation
NDCG@10, best epoch, why training stopped, seconds, the machine) and `tuned.json` (per tokenizer the
settings with the best validation NDCG@10, with the search that chose them), which
`bench run --tuned DIR` applies. Trials that `bench supersede` set aside (`superseded.csv`) count
for nothing: their settings run again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.config import RunConfig, setting_differences
from bench.errors import BenchError
from bench.io import atomic_write_csv, atomic_write_text
from bench.locks import run_locked
from bench.run_files import unit_dir

SAMPLERS = ("grid", "tpe")
TUNING_COLUMNS = ["tokenizer", "trial", "settings", "valid_ndcg@10", "best_epoch", "epochs", "stopped_by", "seconds",
                  "cpu_seconds", "machine"]
TUNABLE_SECTIONS = ("recipe",)  # settings a trial may change: the shared recipe's
SUPERSEDED = "superseded.csv"  # trials set aside by `bench supersede`: they no longer count


def parse_space(values: tuple[str, ...] | list[str]) -> dict[str, list[Any]]:
    """`recipe.lr=1e-3,3e-3` -> {"recipe.lr": [0.001, 0.003]} (numbers parsed as floats/ints)."""
    space: dict[str, list[Any]] = {}
    for item in values:
        key, eq, rest = item.partition("=")
        key = key.strip()
        if not eq or not rest.strip():
            raise BenchError(f"--space {item!r}: expected SECTION.NAME=V1,V2,...")
        space[key] = [_number(v.strip()) for v in rest.split(",") if v.strip()]
    return space


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def check_space(space: dict[str, list[Any]], config: RunConfig) -> None:
    """Only recipe settings, each a known field with valid values."""
    from bench.config import Recipe
    from bench.options import make_options

    if not space:
        raise BenchError("bench tune: the search space is empty")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    for key, values in space.items():
        section, _, name = key.partition(".")
        if section not in TUNABLE_SECTIONS or name not in fields:
            raise BenchError(f"--space {key}: only recipe settings can be tuned (e.g. recipe.lr, recipe.weight_decay)")
        if not values:
            raise BenchError(f"--space {key}: no values")
        for value in values:
            make_options(Recipe, {**dataclasses.asdict(config.recipe), name: value}, "recipe")


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def trial_config(config: RunConfig, spec: str, settings: dict[str, Any], folder: Path) -> RunConfig:
    """The run a trial is: one tokenizer, the tuning seed, the trial's recipe settings, and the
    codes of the search (`folder`'s search folder: every trial trains on one fit)."""
    recipe = dataclasses.replace(config.recipe, **{k.partition(".")[2]: v for k, v in settings.items()})
    return dataclasses.replace(config, tokenizers=[spec], explicit_tokenizers=[spec], recipe=recipe,
                               out=str(folder), tuned={}, codes_store=str(folder.parent.parent))


def run_trial(config: RunConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Train one trial in validation-only mode; its validation NDCG@10 and how training went."""
    from bench.runner import Run

    run = Run(config, log, score_test=False)
    run.run()
    label = run.variants[0].label
    unit = run.unit_dir(label, config.seeds[0])
    done = json.loads((unit / "done").read_text())
    metrics = pd.read_csv(unit / "metrics.csv")
    ndcg = metrics.query("split == 'valid' and metric == 'ndcg' and k == 10")["value"]
    timings = pd.read_csv(unit / "timings.csv")
    cpu = timings["cpu_seconds"] if "cpu_seconds" in timings.columns else pd.Series([math.nan])
    return {"label": label, "valid_ndcg@10": float(ndcg.iloc[0]), "best_epoch": done.get("best_epoch"),
            "epochs": done.get("epochs"), "stopped_by": done.get("stopped_by"),
            "seconds": float(timings["seconds"].sum()),
            "cpu_seconds": None if cpu.isna().any() else float(cpu.sum()),  # None: begun before CPU time was kept
            "machine": str(timings["machine"].iloc[0]) if "machine" in timings.columns else None}


def make_sampler(name: str, space: dict[str, list[Any]], seed: int) -> Any:
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def grid_size(space: dict[str, list[Any]]) -> int:
    n = 1
    for values in space.values():
        n *= len(values)
    return n


def tune(config: RunConfig, space: dict[str, list[Any]], out: Path, trials: int = 0, sampler: str = "grid",
         log: Callable[[str], None] = print, dispatch: Any = None, trackers: tuple[str, ...] = ()) -> Path:
    """Run (or continue) every tokenizer's study; write tuning.csv and tuned.json. With a
    dispatch that is not in-process (`--jobs N`, `--executor`), the grid's unfinished trials of
    every tokenizer are first trained as jobs, all at once; the studies then record them."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if sampler not in SAMPLERS:
        raise BenchError(f"--sampler {sampler!r}: one of {', '.join(SAMPLERS)}")
    check_space(space, config)
    n_trials = trials or grid_size(space)
    if sampler == "tpe" and not trials:
        raise BenchError("--sampler tpe needs --trials N")
    if len(config.seeds) != 1:
        raise BenchError("bench tune trains each trial with one seed (--seeds N)")
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, config, space, sampler, n_trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    from bench.tokenizers import make_tokenizer

    if dispatch is not None and not dispatch.in_process:
        if sampler != "grid" or n_trials != grid_size(space):
            raise BenchError("--jobs/--executor with bench tune: only the whole grid (--sampler grid, no --trials): "
                             "TPE chooses each trial from the last")
        train_grid_as_jobs(config, space, out, dispatch, trackers, log)
    busy = []  # tokenizers whose study another process holds (its lock: skipped here)
    for spec in config.tokenizers:
        label = make_tokenizer(spec, config.options_for(spec)).label
        study = functools.partial(_run_study, storage, config, spec, label, space, out, sampler, n_trials, log)
        if not run_locked(out / "locks" / label, study, log):
            busy.append(label)
        write_summary(out, storage)
    summary = write_summary(out, storage)
    if busy:  # an error, so that `bench tune ... && bench run --tuned ...` waits for those choices
        raise BenchError(f"{out / 'locks'}: another process holds the study of {', '.join(busy)}; "
                         "rerun when it has finished")
    return summary


def _run_study(storage: Any, config: RunConfig, spec: str, label: str, space: dict[str, list[Any]],
               out: Path, sampler: str, n_trials: int, log: Callable[[str], None]) -> None:
    """Run (or continue) one tokenizer's study until it has `n_trials` finished trials."""
    import optuna

    sampler_object = make_sampler(sampler, space, config.seeds[0])
    if label in optuna.get_all_study_names(storage):  # create_study would log a failed creation to the journal
        study = optuna.load_study(study_name=label, storage=storage, sampler=sampler_object)
    else:
        study = optuna.create_study(study_name=label, storage=storage, direction="maximize", sampler=sampler_object)
    set_aside = {number for name, number in superseded_trials(out) if name == label}
    _requeue_unfinished(study, set_aside)
    # a grid sampler stops its study once every grid point has a finished trial, failed
    # ones included: with several failed trials queued again, one call runs each
    while (remaining := n_trials - _n_finished(study, set_aside)) > 0:
        # the summary after every trial, so a search stopped part-way shows what it has done
        study.optimize(lambda trial: _evaluate(trial, space, config, spec, out, log), n_trials=remaining,
                       callbacks=[lambda *_: write_summary(out, storage)])
        if n_trials - _n_finished(study, set_aside) == remaining:  # nothing finished: do not loop
            break


def train_grid_as_jobs(config: RunConfig, space: dict[str, list[Any]], out: Path, dispatch: Any,
                       trackers: tuple[str, ...], log: Callable[[str], None]) -> None:
    """Every grid point of every tokenizer without a finished trial, trained as one dispatch of
    jobs (each trial's shared stages first, in this process). The trial folders are ordinary
    trials: the studies' own loop then finds them done and only records them."""
    import itertools

    from bench.executor import dispatch_jobs
    from bench.runner import Run
    from bench.tokenizers import make_tokenizer

    names = list(space)
    runs, jobs = [], []
    for spec in config.tokenizers:
        label = make_tokenizer(spec, config.options_for(spec)).label
        for values in itertools.product(*(space[n] for n in names)):
            params = dict(zip(names, values))
            folder = trial_folder(out, spec, params)
            if (unit_dir(folder, label, config.seeds[0]) / "done").exists():
                continue  # trained already (the study may not have recorded it yet: its loop will)
            run = Run(trial_config(config, spec, params, folder), log, score_test=False,
                      dispatch=dispatch, trackers=list(trackers))
            run.prepare()
            runs.append(run)
            jobs += run.unit_jobs()
    failed = dispatch_jobs(jobs, dispatch, out / "submitit", config.device, log)
    for run in runs:
        run.merge()
    if failed:
        raise BenchError(f"{len(failed)} trial(s) failed, the others are kept in {out} (rerun to resume): "
                         + "; ".join(failed))


def _requeue_unfinished(study: Any, set_aside: set[int]) -> None:
    """Trials left running by a killed process (the lock says no other one is at it), failed
    or set aside (trial numbers `set_aside`) are queued again, once per settings that have no
    finished trial: the same settings run again, and their folder resumes where it stopped."""
    import optuna

    State = optuna.trial.TrialState
    key = lambda params: json.dumps(params, sort_keys=True)  # noqa: E731
    for frozen in study.get_trials(deepcopy=False, states=(State.RUNNING,)):
        study._storage.set_trial_state_values(frozen._trial_id, State.FAIL)
    trials = study.get_trials(deepcopy=False)
    settled = {key(t.params) for t in trials if t.state == State.COMPLETE and t.number not in set_aside}
    settled |= {key(t.system_attrs.get("fixed_params", {})) for t in trials if t.state == State.WAITING}
    for frozen in trials:
        if (frozen.state == State.FAIL or frozen.number in set_aside) and key(frozen.params) not in settled:
            study.enqueue_trial(frozen.params)
            settled.add(key(frozen.params))


def _n_finished(study: Any, set_aside: set[int]) -> int:
    import optuna

    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sum(t.number not in set_aside for t in finished)


def superseded_trials(out: Path) -> set[tuple[str, int]]:
    """(tokenizer, trial number) of the trials `bench supersede` set aside in tuning folder `out`."""
    path = out / SUPERSEDED
    if not path.is_file():
        return set()
    try:
        rows = pd.read_csv(path, usecols=["tokenizer", "trial"])
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise BenchError(f"{path}: not a list of superseded trials ({type(e).__name__})") from None
    return {(str(t), int(n)) for t, n in rows.itertuples(index=False)}


def trial_folder(out: Path, spec: str, settings: dict[str, Any]) -> Path:
    return out / "trials" / f"{spec.replace(':', '-').replace('/', '-')}-{settings_hash(settings)}"


def _evaluate(trial: Any, space: dict[str, list[Any]], config: RunConfig, spec: str, out: Path,
              log: Callable[[str], None]) -> float:
    """Optuna's objective: run the trial (resuming its folder); its validation NDCG@10."""
    params = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
    folder = trial_folder(out, spec, params)
    log(f"tune {spec} trial {trial.number}: {json.dumps(params)} in {folder}")
    result = run_trial(trial_config(config, spec, params, folder), log)
    trial.set_user_attr("result", result)
    log(f"tune {spec} trial {trial.number}: valid NDCG@10 {result['valid_ndcg@10']:.4f} "
        f"(best epoch {result['best_epoch']} of {result['epochs']}, stopped by {result['stopped_by']})")
    return result["valid_ndcg@10"]


def base_settings(config: RunConfig) -> dict[str, Any]:
    """What every trial shares besides its own settings: a change makes another search."""
    return {key: json.loads(json.dumps(value, default=str)) for key, value in config.to_dict().items()
            if key in ("recipe", "t5", "causal", "synthetic", "sasrec", "tokenizer_options")}


def _check_folder(out: Path, config: RunConfig, space: dict[str, list[Any]], sampler: str, n_trials: int) -> None:
    """A tuning folder holds one search: the same data, preset, seed, space and budget."""
    path = out / "search.json"
    search = {"dataset": config.dataset, "preset": config.preset, "backbone": config.backbone,
              "seed": config.seeds[0], "space": space, "sampler": sampler, "trials": n_trials,
              "data_options": dataclasses.asdict(config.data_options), "embedding_model": config.embedding_model,
              "base": base_settings(config)}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BenchError(f"{path}: unreadable ({type(e).__name__}); use another --out") from None
        for key, value in search.items():
            if key == "base":
                saved = old.get("base") or {}
                differs = [(k, d) for k, v in value.items() for d in setting_differences(k, saved.get(k, v), v)]
            else:
                differs = [(key, d) for d in setting_differences(key, old.get(key), value)]
            if differs:
                raise BenchError(f"{out}: holds a search with another {differs[0][0]} "
                                 f"({'; '.join(d for _, d in differs)}); use another --out")
    else:
        atomic_write_text(path, json.dumps(search, indent=2))


def write_summary(out: Path, storage: Any) -> Path:
    """tuning.csv from every finished trial of every study, and tuned.json: per tokenizer the
    settings with the best validation NDCG@10 (the earliest trial on ties)."""
    import optuna

    search = json.loads((out / "search.json").read_text())
    rows, chosen, set_aside = [], {}, superseded_trials(out)
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
                and (summary.study_name, t.number) not in set_aside]
        for t in sorted(done, key=lambda t: t.number):
            result = t.user_attrs.get("result", {})
            rows.append({"tokenizer": summary.study_name, "trial": t.number, "settings": json.dumps(t.params, sort_keys=True),
                         "valid_ndcg@10": t.value, "best_epoch": result.get("best_epoch"), "epochs": result.get("epochs"),
                         "stopped_by": result.get("stopped_by"), "seconds": result.get("seconds"),
                         "cpu_seconds": result.get("cpu_seconds"), "machine": result.get("machine")})
        if done:
            best = max(done, key=lambda t: (t.value, -t.number))
            results = [t.user_attrs.get("result", {}) for t in done]
            cpu = [r.get("cpu_seconds") for r in results]
            chosen[summary.study_name] = {"settings": best.params, "trial": best.number, "valid_ndcg@10": best.value,
                                          "trials": len(done), "complete": len(done) >= search["trials"],
                                          "wall_minutes": round(sum(r.get("seconds") or 0.0 for r in results) / 60, 1),
                                          "cpu_minutes": None if None in cpu else round(sum(cpu) / 60, 1)}
    atomic_write_csv(out / "tuning.csv", pd.DataFrame(rows, columns=TUNING_COLUMNS))
    path = out / "tuned.json"
    atomic_write_text(path, json.dumps({"search": search, "chosen": chosen}, indent=2))
    return path


def summary_table(path: Path) -> pd.DataFrame:
    """Per tokenizer: trials done, the space, best validation NDCG@10, the chosen values and the
    cost: CPU minutes (core-minutes; blank when a trial was begun before CPU time was kept) and
    wall minutes (which also count waiting for a core and pauses)."""
    tuned = json.loads(path.read_text())
    space = json.dumps(tuned["search"]["space"])
    rows = [{"tokenizer": name, "trials": f"{c['trials']} of {tuned['search']['trials']}", "space": space,
             "best valid NDCG@10": round(c["valid_ndcg@10"], 4), "chosen": json.dumps(c["settings"]),
             "CPU minutes": c.get("cpu_minutes"), "wall minutes": c.get("wall_minutes")}
            for name, c in tuned["chosen"].items()]
    return pd.DataFrame(rows)


def load_tuned(folder: Path, config: RunConfig) -> dict[str, Any]:
    """tuned.json of `folder`, checked against the run it is applied to: same data set, preset,
    backbone and data options, and a finished search for every tokenizer of the run."""
    path = folder / "tuned.json"
    if not path.is_file():
        raise BenchError(f"--tuned {folder}: no tuned.json (run bench tune --out {folder} first)")
    try:
        tuned = json.loads(path.read_text())
        search, chosen = tuned["search"], tuned["chosen"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise BenchError(f"{path}: not a bench tune result ({type(e).__name__})") from None
    for key, value in (("dataset", config.dataset), ("preset", config.preset), ("backbone", config.backbone),
                       ("data_options", dataclasses.asdict(config.data_options)),
                       ("embedding_model", config.embedding_model)):
        if json.dumps(search.get(key), sort_keys=True) != json.dumps(value, sort_keys=True):
            raise BenchError(f"{path}: tuned with {key} {search.get(key)!r}, but this run uses {value!r}")
    for key, value in base_settings(config).items():
        differences = setting_differences(key, search["base"][key], value) if key in (search.get("base") or {}) else []
        if differences:
            raise BenchError(f"{path}: tuned with other {key} settings than this run's ({'; '.join(differences)})")
    from bench.tokenizers import make_tokenizer

    labels = {make_tokenizer(spec, config.options_for(spec)).label for spec in config.tokenizers}
    chosen = {name: c for name, c in chosen.items() if name in labels}  # this run's tokenizers only
    incomplete = [name for name, c in chosen.items() if not c.get("complete")]
    if incomplete:
        raise BenchError(f"{path}: the search of {', '.join(incomplete)} is not finished (rerun bench tune --out {folder})")
    return {"dir": str(folder), "search": search, "chosen": chosen}
