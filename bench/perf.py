"""`bench perf`: how fast this machine evaluates (constrained beam search), trains (the shared
recipe's step) and fits a tokenizer (LETTER), at a given model size, next to the slow path
the official LETTER code uses (`transformers` generate + a per-beam Python prefix callback)
and a fp32 matmul rate measured in the same run. Every figure is a median over repeats with
its min..max; peak memory is sampled per part."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from bench.errors import BenchError
from bench.options import check
from bench.perf_report import PeakMemory, PerfReport, matmul_peak, timed

DEFAULT_DATASET = "letter:../shared/data/letter/Instruments"
PARTS = ("eval", "hf", "train", "tokenizer")


@dataclass
class PerfOptions:
    dataset: str = DEFAULT_DATASET
    tokenizer: str = ""  # codes the backbone decodes; "" = the data set's own index.json
    size: str = "paper"  # T5 size of this preset
    users: int = 1000  # test users decoded by our beam search per repeat
    hf_users: int = 100  # the first hf_users of those, also decoded by transformers' generate
    beam: int = 20
    eval_batch_size: int = 0  # 0 = the recipe's
    steps: int = 40  # timed training steps (the same batches in every repeat)
    batch_size: int = 256
    pretrain_steps: int = 50  # training steps before decoding, so the distribution is not flat
    repeats: int = 3
    threads: str = "1"  # comma list of torch thread counts, each measured in the same run
    letter_epochs: int = 3
    input_budgets: str = "0"  # comma list of recipe.max_input_tokens values, training timed at each
    parts: str = ",".join(PARTS)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check(min(self.users, self.beam, self.steps, self.batch_size, self.repeats, self.letter_epochs) > 0,
              "users, beam, steps, batch_size, repeats, letter_epochs must be > 0")
        check(self.hf_users >= 0 and self.pretrain_steps >= 0 and self.eval_batch_size >= 0,
              "hf_users, pretrain_steps, eval_batch_size must be >= 0")
        check(all(p in PARTS for p in self.part_list), f"parts must be a comma list of {', '.join(PARTS)}")
        check(all(t > 0 for t in self.thread_list), "threads must be a comma list of positive integers")
        check(all(b >= 0 for b in self.budget_list), "input_budgets must be a comma list of integers >= 0")

    @property
    def part_list(self) -> list[str]:
        return [p.strip() for p in self.parts.split(",") if p.strip()]

    @property
    def budget_list(self) -> list[int]:
        try:
            return [int(b) for b in self.input_budgets.split(",") if b.strip()]
        except ValueError:
            raise BenchError(f"input_budgets must be a comma list of integers, not {self.input_budgets!r}") from None

    @property
    def thread_list(self) -> list[int]:
        try:
            return [int(t) for t in self.threads.split(",") if t.strip()]
        except ValueError:
            return [0]


QUICK = {"users": 64, "hf_users": 8, "steps": 3, "pretrain_steps": 0, "repeats": 1, "letter_epochs": 1}


# -- the slow reference: transformers' generate with a per-beam Python callback ---------------

def prefix_dict(sequences: list[tuple[int, ...]], eos: int) -> dict[tuple[int, ...], list[int]]:
    """Every code prefix -> the tokens that may follow it, as plain Python (the official code's way)."""
    allowed: dict[tuple[int, ...], set[int]] = {}
    for seq in sequences:
        full = (*seq, eos)
        for i in range(len(full)):
            allowed.setdefault(full[:i], set()).add(full[i])
    return {k: sorted(v) for k, v in allowed.items()}


def hf_generate(backbone: Any, trie: Any, histories: list[list[int]], beam: int, k: int,
                allowed: dict[tuple[int, ...], list[int]], length_penalty: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items and scores with `model.generate(num_beams, prefix_allowed_tokens_fn)` at its
    default early stopping and the recipe's length penalty, as our beam search runs."""
    from bench.backbones.base import EOS, attention_kernels

    ids, mask = backbone.encode_inputs(histories)

    def allowed_tokens(batch_id: int, sentence: torch.Tensor) -> list[int]:
        return allowed.get(tuple(sentence.tolist()[1:]), [EOS])

    with attention_kernels():  # the kernels our beam search uses
        out = backbone.model.generate(input_ids=ids, attention_mask=mask, num_beams=beam, num_return_sequences=beam,
                                      max_new_tokens=trie.depth, prefix_allowed_tokens_fn=allowed_tokens,
                                      length_penalty=length_penalty, early_stopping=False, do_sample=False,
                                      output_scores=True, return_dict_in_generate=True)
    seqs = out.sequences[:, 1:].view(len(histories), beam, -1).tolist()
    seq_scores = out.sequences_scores.view(len(histories), beam).float().cpu().numpy()
    items = np.full((len(histories), k), -1, dtype=np.int64)
    scores = np.full((len(histories), k), -np.inf)
    for u, rows in enumerate(seqs):
        pos = 0
        for b, row in enumerate(rows):
            tokens = row[: row.index(EOS) + 1] if EOS in row else row
            node = trie.follow(tokens)
            for item in (trie.items_of(node) if node >= 0 else []):
                if pos < k:
                    items[u, pos], scores[u, pos] = item, seq_scores[u, b]
                    pos += 1
    return items, scores


# -- the parts --------------------------------------------------------------------------------

def _train_step(backbone: Any, samples: Any, idx: np.ndarray, optimizer: torch.optim.Optimizer, recipe: Any,
                accelerator: Any, scheduler: Any) -> float:
    """Collate, then the recipe's own step (bench.training.train_step): what a run times."""
    from bench.training import train_step

    batch = backbone.collate([samples.histories[i] for i in idx], samples.targets[idx].tolist())
    return train_step(backbone, batch, recipe, accelerator, optimizer, scheduler)


def train_flops(backbone: Any, samples: Any, batches: list[np.ndarray], recipe: Any) -> float:
    """FLOPs of forward + backward of these batches, the ones every repeat times (torch's
    FlopCounterMode; the optimizer's elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.training import _autocast

    counter = FlopCounterMode(display=False)
    with counter:
        for idx in batches:
            batch = backbone.collate([samples.histories[i] for i in idx], samples.targets[idx].tolist())
            with _autocast(backbone):
                backbone(batch, recipe.tau).backward()  # forward(): the training step's kernels
    backbone.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def measure_training(report: PerfReport, backbone: Any, split: Any, recipe: Any, o: PerfOptions,
                     device: torch.device, label: str, memory: PeakMemory) -> None:
    from bench.training import batches

    rng = np.random.default_rng(o.seed)
    all_batches = [b for b in batches(split.train, o.batch_size, rng) if len(b) == o.batch_size]
    # the same batches in every repeat, so repeats differ only by the machine's noise (batches
    # of a bucketed epoch differ in length, and so in cost, several-fold)
    need = o.steps + 2
    timed_batches = (all_batches * math.ceil(need / max(1, len(all_batches))))[:need]
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    from bench.training import make_accelerator

    optimizer = torch.optim.AdamW(backbone.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    accelerator = make_accelerator(device)
    backbone.train()
    with memory.watch():
        for idx in timed_batches[:2]:  # warm-up
            _train_step(backbone, split.train, idx, optimizer, recipe, accelerator, scheduler)
        rates, seconds = [], []
        timed_part = timed_batches[2:]
        for _repeat in range(o.repeats):
            s, _ = timed(lambda: [_train_step(backbone, split.train, idx, optimizer, recipe, accelerator, scheduler) for idx in timed_part], device)
            seconds.append(s)
            rates.append(sum(len(i) for i in timed_part) / s)
    flops = train_flops(backbone, split.train, timed_part, recipe)
    backbone.load_state_dict(state)
    report.add("train", f"samples/s {label}", rates, "samples/s", f"batch {o.batch_size}, collate+fwd+bwd+AdamW")
    report.add("train", f"GFLOP/s {label}", [flops / s / 1e9 for s in seconds], "GFLOP/s", f"{flops / (o.steps * o.batch_size) / 1e9:.3f} GFLOP/sample (fwd+bwd)")
    memory.report(report, "train")


def measure_eval(report: PerfReport, backbone: Any, trie: Any, users: Any, recipe: Any, o: PerfOptions,
                 device: torch.device, label: str, memory: PeakMemory) -> Any:
    from bench.training import evaluate

    evaluate(backbone, trie, users.subset(np.arange(min(len(users), recipe.eval_batch_size))), recipe)  # warm-up
    rates, ranked = [], None
    with memory.watch():
        for _ in range(o.repeats):
            s, ranked = timed(lambda: evaluate(backbone, trie, users, recipe), device)
            rates.append(len(users) / s)
    report.add("eval", f"users/s ours {label}", rates, "users/s",
               f"beam {recipe.beam}, {len(users)} users, batch {recipe.eval_batch_size}")
    memory.report(report, "eval")
    return ranked, statistics.median(rates)


def measure_hf(report: PerfReport, backbone: Any, trie: Any, users: Any, ours: Any, ours_rate: float, recipe: Any,
               o: PerfOptions, device: torch.device, label: str, memory: PeakMemory) -> None:
    from bench.backbones.base import EOS
    from bench.training import _autocast

    allowed = prefix_dict(backbone.item_sequences(), EOS)
    order = np.argsort([len(h) for h in users.histories], kind="stable")
    k = ours.items.shape[1]
    items = np.full((len(users), k), -1, dtype=np.int64)
    scores = np.full((len(users), k), -np.inf)
    backbone.eval()

    def run() -> None:
        with torch.inference_mode(), _autocast(backbone):
            for lo in range(0, len(order), recipe.eval_batch_size):
                idx = order[lo: lo + recipe.eval_batch_size]
                items[idx], scores[idx] = hf_generate(backbone, trie, [users.histories[i] for i in idx],
                                                      recipe.beam, k, allowed, recipe.length_penalty)

    rates = []
    with memory.watch():
        for _ in range(max(1, min(o.repeats, 2))):  # the slow path: at most 2 repeats
            s, _ = timed(run, device)
            rates.append(len(users) / s)
    report.add("hf", f"users/s generate {label}", rates, "users/s", f"{len(users)} users, prefix_allowed_tokens_fn")
    report.add("hf", f"speed ratio ours/generate {label}", ours_rate / statistics.median(rates), "x")
    same = (items == ours.items[: len(users)]).all(1)
    top1 = (items[:, 0] == ours.items[: len(users), 0])
    report.add("hf", "top-20 lists identical", 100 * same.mean(), "% users")
    report.add("hf", "top-1 identical", 100 * top1.mean(), "% users")
    both = np.isfinite(scores) & np.isfinite(ours.scores[: len(users)])
    diff = np.abs(scores - ours.scores[: len(users)])[both & (items == ours.items[: len(users)])]
    report.add("hf", "max |score diff| (same items)", diff.max() if len(diff) else math.nan, "log-prob")
    memory.report(report, "hf")


def measure_tokenizer(report: PerfReport, data: Any, split: Any, o: PerfOptions, memory: PeakMemory) -> None:
    """LETTER with the paper's options but few epochs, random 384-d text embeddings and the
    data set's CF embeddings (random 32-d where it has none)."""
    import bench.tokenizers.letter as letter_module
    from bench.tokenizers import FitContext, make_tokenizer
    from bench.tokenizers.letter import PRESET_OPTIONS

    rng = np.random.default_rng(o.seed)
    text = rng.standard_normal((data.n_items, 384)).astype(np.float32)
    cf = data.cf_embeddings
    note = "CF from the data set"
    if cf is None:
        cf, note = rng.standard_normal((data.n_items, 32)).astype(np.float32), "random CF"
    options = {**PRESET_OPTIONS["paper"], "epochs": o.letter_epochs, "eval_every": o.letter_epochs}
    tok = make_tokenizer("letter", options)
    export_seconds: list[float] = []
    original = letter_module.export_codes

    def export_timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = original(*args, **kwargs)
        export_seconds.append(time.perf_counter() - start)
        return out

    letter_module.export_codes = export_timed
    try:
        with memory.watch():
            fit_seconds, _ = timed(lambda: tok.fit(FitContext(data, split, o.seed, text_embeddings=lambda: text,
                                                              cf_embeddings=lambda: cf, log=lambda m: None)),
                                   torch.device("cpu"))
    finally:
        letter_module.export_codes = original
    epochs = [row["seconds"] for row in tok.history]
    report.add("tokenizer", "LETTER s/epoch", epochs, "s", f"{data.n_items} items, batch {options['batch_size']}, {note}")
    report.add("tokenizer", "LETTER export (Sinkhorn rounds)", export_seconds, "s")
    report.add("tokenizer", "LETTER fit total", fit_seconds, "s", f"{o.letter_epochs} epochs + k-means init + export")
    memory.report(report, "tokenizer")


def official_codes(data: Any, spec: str) -> str:
    """The precomputed tokenizer over the data set's own LETTER index.json."""
    if data.index_path is None:
        raise BenchError(f"perf: {spec} ships no index.json; name the codes to decode with --tokenizer")
    return f"precomputed:{data.index_path}"


def run_perf(o: PerfOptions, log: Callable[[str], None] = print) -> PerfReport:
    from bench.backbones import T5Backbone
    from bench.config import preset_config
    from bench.datasets import leave_one_out, load_dataset
    from bench.embeddings.lazy import Embeddings
    from bench.runner import resolve_device
    from bench.tokenizers import make_tokenizer

    device = resolve_device(o.device)
    config = preset_config(o.size)
    recipe = config.recipe
    recipe.beam, recipe.batch_size = o.beam, o.batch_size
    if o.eval_batch_size:
        recipe.eval_batch_size = o.eval_batch_size
    report = PerfReport()
    memory = PeakMemory(device)
    if not o.tokenizer and o.dataset.partition(":")[0] == "synthetic":  # before generating it (a minute)
        raise BenchError(f"perf: {o.dataset} ships no index.json; name the codes to decode with --tokenizer")
    data = load_dataset(o.dataset, config.synthetic)
    split = leave_one_out(data)
    torch.manual_seed(o.seed)
    codes = o.tokenizer or official_codes(data, o.dataset)
    tok = Embeddings(data, split, config, device, log=lambda m: None).fit(make_tokenizer(codes, config.options_for(codes)), o.seed)
    backbone = T5Backbone(tok, config.t5).to(device)
    trie = backbone.trie()
    pick = np.sort(np.random.default_rng(o.seed).choice(len(split.test), min(o.users, len(split.test)), replace=False))
    users = split.test.subset(pick)
    report.context = {"options": asdict(o), "device": str(device), "n_items": data.n_items, "n_users": data.n_users,
                      "vocab": len(tok.vocab), "code_depth": trie.depth, "t5": asdict(config.t5),
                      "parameters": sum(p.numel() for p in backbone.parameters()), "torch": torch.__version__}
    log(f"perf: {data.n_items} items, {len(users)} test users, codes {codes}, vocab {len(tok.vocab)}, "
        f"{report.context['parameters'] / 1e6:.2f}M parameters, device {device}")
    parts = o.part_list
    if device.type == "cpu":
        torch.set_num_threads(max(o.thread_list))
    if o.pretrain_steps and ("eval" in parts or "hf" in parts):
        start = time.perf_counter()
        optimizer = torch.optim.AdamW(backbone.parameters(), lr=1e-3, weight_decay=recipe.weight_decay)
        from bench.training import batches, make_accelerator

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        accelerator = make_accelerator(device)
        backbone.train()
        chosen = batches(split.train, o.batch_size, np.random.default_rng(o.seed + 1))[: o.pretrain_steps]
        losses = [_train_step(backbone, split.train, idx, optimizer, recipe, accelerator, scheduler) for idx in chosen]
        log(f"perf: pretrained {len(chosen)} steps in {time.perf_counter() - start:.0f}s, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        report.context["pretrain_loss"] = [losses[0], losses[-1]]
    backbone.eval()
    threads = o.thread_list if device.type == "cpu" else [torch.get_num_threads()]
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        label = f"[{n_threads} thr]" if device.type == "cpu" else "[gpu]"
        log(f"perf: {label} matmul")
        report.add("peak", f"fp32 matmul {label}", matmul_peak(device), "GFLOP/s", "1024x1024 torch.mm")
        ours, ours_rate = None, 0.0
        if "eval" in parts or "hf" in parts:
            log(f"perf: {label} evaluation")
            ours, ours_rate = measure_eval(report, backbone, trie, users, recipe, o, device, label, memory)
        if "hf" in parts and o.hf_users:
            log(f"perf: {label} transformers generate")
            hf_users = users.subset(np.arange(min(o.hf_users, len(users))))
            measure_hf(report, backbone, trie, hf_users, ours, ours_rate, recipe, o, device, label, memory)
        if "train" in parts:
            for budget in o.budget_list:  # side by side, so their ratio is free of machine drift
                backbone.max_input_tokens = budget
                tag = label if o.budget_list == [0] else f"{label} [input budget {budget or 'none'}]"
                log(f"perf: {tag} training")
                measure_training(report, backbone, split, recipe, o, device, tag, memory)
            backbone.max_input_tokens = 0
    if "tokenizer" in parts:
        if device.type == "cpu":
            torch.set_num_threads(threads[0])
        log(f"perf: LETTER tokenizer ({torch.get_num_threads()} thr)")
        measure_tokenizer(report, data, split, o, memory)
    return report
