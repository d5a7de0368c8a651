"""The residual-quantised VAE behind `tiger` and `letter` (DESIGN section 5).

    x [B, d_in] --encoder MLP--> z [B, D] --L residual quantisers--> z_q [B, D] --decoder--> x_hat

Level l picks, for the residual r_l, a code e_l from its codebook E_l [N_l, D] (argmin of the
squared distance, or Sinkhorn-balanced), then r_{l+1} = r_l - e_l and z_q = sum_l e_l.

Loss (per batch; "||.||^2" is a mean over elements, as in F.mse_loss and LETTER's release):

    recon_weight * ||x_hat - x||^2
    + mean over levels of [ ||sg(r_l) - e_l||^2 + beta_commit * ||r_l - sg(e_l)||^2
                            + beta_div * L_div,l ]
    + alpha_cf * CE(z_q @ H^T, arange(B))

Choices that follow LETTER's released code (RQ-VAE/models), kept on purpose:
- Straight-through estimator with detached residuals: each level passes
  r_l + sg(e_l - r_l) on, and the next residual is r_l minus that, so only level 0 carries a
  gradient back to the encoder; z_q's gradient reaches the encoder as the identity and never
  the codebooks. Consequently the CF loss trains only the encoder, and the commitment term of
  levels >= 1 moves nothing (their codebook term still trains the codebooks).
- The CF loss uses raw dot products with no temperature, in-batch negatives.
- The diversity loss (LETTER eq. 5): the codebook of each level is split into K groups by
  size-constrained k-means (`k-means-constrained`, 10 iterations x 10 restarts, group sizes
  10..60 for 256 codes), refreshed every epoch; for an item's code e_c a random other code
  of its group is the positive and every other code of the level a negative:
  CE(e_c @ E^T with e_c's own column masked, positive). Raw dot products, temperature 1.
- Per-level losses are averaged over levels (so beta_div is effectively divided by L).
- Sinkhorn: distances rescaled to [-1, 1] over the batch, Q = exp(-d / epsilon) in float64,
  alternately normalised over items and codes `iters` times (ending on codes), then argmax
  per item (with a log-space fallback should float64 underflow).
- Model selection (`rqvae_train.py`): the release checks the collision rate of argmin codes over the whole
  catalogue every 2,000 of its 20,000 epochs and keeps the lowest (the first on ties);
  we check every `eval_every` epochs, by default 10 times spread over training, and the last
  epoch. `select="last"` keeps the last epoch instead.
- Initialisation (`init="constrained"`, LETTER's default): each level's codebook starts from
  size-constrained k-means over the whole catalogue's residuals at that level (256 clusters,
  size_min = min(N // 512, 50), size_max = 4 x size_min, 10 iterations x 10 restarts), and the
  residual passed on is that of the level's own assignment (Sinkhorn on a Sinkhorn level, as
  the release's vq_ini). `init="kmeans"` is TIGER's plain k-means (scikit-learn, k-means++ then
  Lloyd). A catalogue of fewer than 2 x 256 items cannot meet the release's bounds and gets
  plain k-means.
Differences: the release's encoder is 2048-1024-512-256-128-64; we default to TIGER's
512-256-128 (DESIGN section 5), configurable (`--set letter.hidden=2048,1024,512,256,128,64`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.tokenizers.kmeans import constrained_kmeans, feasible_bounds, init_centres, squared_distances

# One training budget and model selection for every RQ-VAE tokenizer (tiger, letter), per
# preset: their PRESET_OPTIONS are this, so neither gets more epochs or checks than the other.
# cpu: 120 epochs (ML-100K's 1,682 items in a few minutes); paper: the release's 20,000.
RQVAE_PRESETS: dict[str, dict[str, object]] = {
    # quick: 100 epochs keep `make run` short (letter re-clusters its codebooks every epoch)
    "quick": {"codebook_size": 32, "epochs": 100, "batch_size": 128},
    "cpu": {"epochs": 120, "batch_size": 256},
    "paper": {"epochs": 20000, "batch_size": 1024, "lr": 1e-3},
}
INIT_METHODS = ("kmeans", "constrained")
GROUP_ITERS, GROUP_RESTARTS = 10, 10  # the release's KMeansConstrained for diversity groups


# -- configuration -------------------------------------------------------------------------
@dataclass
class RQVAEConfig:
    d_in: int
    hidden: tuple[int, ...] = (512, 256, 128)
    latent_dim: int = 32
    codebook_sizes: tuple[int, ...] = (256, 256, 256)
    beta_commit: float = 0.25
    sinkhorn_levels: tuple[int, ...] = ()  # levels that assign by Sinkhorn during training
    sinkhorn_epsilon: float = 0.003
    sinkhorn_iters: int = 50
    alpha_cf: float = 0.0
    beta_div: float = 0.0
    recon_weight: float = 1.0
    n_clusters: int = 10
    cluster_min: int = 10
    cluster_max: int = 60
    kmeans_init: bool = True
    kmeans_iters: int = 100
    init: str = "kmeans"  # `kmeans` (TIGER) or `constrained` (LETTER's release)
    kmeans_restarts: int = 1

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)


def parse_sizes(text: str) -> tuple[int, ...]:
    """'512,256,128' -> (512, 256, 128); raises ValueError (reported by make_options)."""
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"hidden must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"hidden must be positive integers, got {text!r}")
    return sizes


# -- building blocks -------------------------------------------------------------------------
def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them and none after the last. Xavier-normal weights and
    zero biases as LETTER's release: PyTorch's default init shrinks unit-norm text embeddings
    to a latent cloud so small that the first Adam steps move it off the k-means codebooks."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        nn.init.xavier_normal_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def rescale_to_unit(d: torch.Tensor) -> torch.Tensor:
    """Map the whole matrix to [-1, 1] (LETTER's center_distance_for_constraint)."""
    middle = (d.max() + d.min()) / 2
    amplitude = d.max() - middle + 1e-5
    return (d - middle) / amplitude


@torch.no_grad()
def sinkhorn(d: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """Balanced transport plan [B, N] for distances [B, N] already in [-1, 1]: Q = exp(-d/eps),
    rows (items) and columns (codes) alternately normalised, ending on the codes. In float64
    as the release (with d in [-1, 1], eps >= 0.003 cannot overflow); should entries still
    underflow to an all-zero row or column, the same iterations are redone in log space."""
    b, n = d.shape
    q = torch.exp(-d.double() / epsilon)
    for _ in range(iters):
        q = q / (q.sum(1, keepdim=True) * b)
        q = q / (q.sum(0, keepdim=True) * n)
    if torch.isfinite(q).all():
        return q
    log_q = -d.double() / epsilon
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(n)
    return log_q.exp()


@torch.no_grad()
def assign(r: torch.Tensor, codebook: torch.Tensor, use_sinkhorn: bool,
           epsilon: float = 0.003, iters: int = 50) -> torch.Tensor:
    """Code index [B] per residual: argmin distance, or argmax of the Sinkhorn plan."""
    d = squared_distances(r, codebook)
    if not use_sinkhorn:
        return d.argmin(1)
    return sinkhorn(rescale_to_unit(d), epsilon, iters).argmax(1)


# -- the loss terms, each on its own so tests can check them by hand ---------------------------
def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x_hat, x)


def codebook_loss(r: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """||sg(r) - e||^2: moves the code towards the residual."""
    return F.mse_loss(e, r.detach())


def commitment_loss(r: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """||r - sg(e)||^2: moves the residual (encoder) towards the code."""
    return F.mse_loss(r, e.detach())


def cf_loss(z_q: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """In-batch contrastive loss [B, D] x [B, D]: item b's CF embedding is the positive."""
    return F.cross_entropy(z_q @ h.T, torch.arange(len(z_q), device=z_q.device))


def diversity_loss(idx: torch.Tensor, codebook: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """CE(e_c @ E^T with the own code masked, positive code) for codes idx [B], E [N, D]."""
    sim = codebook[idx] @ codebook.T  # [B, N]
    sim = sim.masked_fill(F.one_hot(idx, len(codebook)).bool(), float("-inf"))
    return F.cross_entropy(sim, positives)


def sample_positives(idx: torch.Tensor, groups: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each code in idx [B], a uniformly random *other* code of its group.
    groups: [N] group label per code; every group must have >= 2 codes."""
    idx_cpu, groups_cpu = idx.cpu(), groups.cpu()
    order = torch.argsort(groups_cpu, stable=True)  # codes sorted by group
    sizes = torch.bincount(groups_cpu)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))  # position of each code in `order`
    g = groups_cpu[idx_cpu]
    own = rank[idx_cpu] - starts[g]  # position of the code inside its group
    pick = (torch.rand(len(idx_cpu), generator=generator) * (sizes[g] - 1)).long()
    pick = pick + (pick >= own).long()  # skip the code itself
    return order[starts[g] + pick].to(idx.device)


# -- the model -------------------------------------------------------------------------------------
@dataclass
class Output:
    x_hat: torch.Tensor  # [B, d_in]
    z_q: torch.Tensor  # [B, D], straight-through
    codes: torch.Tensor  # [B, L]
    loss: torch.Tensor  # scalar
    parts: dict[str, float]  # loss terms for the log


class RQVAE(nn.Module):
    def __init__(self, cfg: RQVAEConfig):
        super().__init__()
        self.cfg = cfg
        sizes = [cfg.d_in, *cfg.hidden, cfg.latent_dim]
        self.encoder = mlp(sizes)  # d_in -> ... -> D
        self.decoder = mlp(sizes[::-1])  # D -> ... -> d_in
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.empty(n, cfg.latent_dim).uniform_(-1 / n, 1 / n)) for n in cfg.codebook_sizes]
        )
        self.groups: list[torch.Tensor] | None = None  # per level, diversity group of each code

    def quantize(self, z: torch.Tensor, sinkhorn_levels: tuple[int, ...]):
        """z [B, D] -> (z_q straight-through [B, D], codes [B, L], [(r_l, e_l)] per level)."""
        residual, z_q = z, torch.zeros_like(z)
        codes, pairs = [], []
        for level, codebook in enumerate(self.codebooks):
            idx = assign(residual.detach(), codebook.detach(), level in sinkhorn_levels,
                         self.cfg.sinkhorn_epsilon, self.cfg.sinkhorn_iters)  # [B]
            e = codebook[idx]  # [B, D], gradient to the codebook
            pairs.append((residual, e))
            e_st = residual + (e - residual).detach()  # value e, gradient to the residual
            residual = residual - e_st  # value r - e, no gradient (detached residuals)
            z_q = z_q + e_st
            codes.append(idx)
        return z_q, torch.stack(codes, 1), pairs

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Output:
        cfg = self.cfg
        z = self.encoder(x)  # [B, D]
        z_q, codes, pairs = self.quantize(z, cfg.sinkhorn_levels if self.training else ())
        x_hat = self.decoder(z_q)  # [B, d_in]
        recon = reconstruction_loss(x_hat, x)
        per_level, cb_sum, commit_sum, div_sum = [], 0.0, 0.0, 0.0
        for level, (r, e) in enumerate(pairs):
            cb, commit = codebook_loss(r, e), commitment_loss(r, e)
            term = cb + cfg.beta_commit * commit
            if cfg.beta_div > 0:
                if self.groups is None or generator is None:
                    raise RuntimeError("diversity loss needs refresh_groups() and a generator")
                positives = sample_positives(codes[:, level], self.groups[level], generator)
                div = diversity_loss(codes[:, level], self.codebooks[level], positives)
                term = term + cfg.beta_div * div
                div_sum += div.item()
            per_level.append(term)
            cb_sum, commit_sum = cb_sum + cb.item(), commit_sum + commit.item()
        quant = torch.stack(per_level).mean()
        loss = cfg.recon_weight * recon + quant
        parts = {"recon": recon.item(), "codebook": cb_sum / cfg.levels,
                 "commit": commit_sum / cfg.levels, "quant": quant.item()}
        if cfg.beta_div > 0:
            parts["div"] = div_sum / cfg.levels
        if cfg.alpha_cf > 0:
            if h is None:
                raise RuntimeError("alpha_cf > 0 needs CF embeddings")
            cf = cf_loss(z_q, h)
            loss = loss + cfg.alpha_cf * cf
            parts["cf"] = cf.item()
        parts["loss"] = loss.item()
        return Output(x_hat, z_q, codes, loss, parts)

    @torch.no_grad()
    def encode(self, x: torch.Tensor | np.ndarray, sinkhorn_levels: tuple[int, ...] = (),
               batch_size: int = 4096) -> torch.Tensor:
        """Codes [n, L] (argmin unless a level is listed in sinkhorn_levels)."""
        x = torch.as_tensor(x, dtype=torch.float32, device=self.codebooks[0].device)
        was_training = self.training
        self.eval()
        out = [self.quantize(self.encoder(x[i:i + batch_size]), sinkhorn_levels)[1]
               for i in range(0, len(x), batch_size)]
        self.train(was_training)
        return torch.cat(out)

    @torch.no_grad()
    def residuals(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The residual each level quantises under argmin codes, [n, L, D]."""
        x = torch.as_tensor(x, dtype=torch.float32, device=self.codebooks[0].device)
        was_training = self.training
        self.eval()
        _, _, pairs = self.quantize(self.encoder(x), ())
        self.train(was_training)
        return torch.stack([r for r, _ in pairs], 1)

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int) -> None:
        """Each level's codebook from k-means (`cfg.init`) of the catalogue's residuals at that
        level; the next level sees the residuals of this level's assignment."""
        cfg = self.cfg
        residual = self.encoder(x)
        for level, codebook in enumerate(self.codebooks):
            centres = init_centres(residual, len(codebook), cfg.init, cfg.kmeans_iters, cfg.kmeans_restarts, seed + level)
            codebook.copy_(torch.from_numpy(centres).to(codebook.device))
            idx = assign(residual, codebook, level in cfg.sinkhorn_levels, cfg.sinkhorn_epsilon, cfg.sinkhorn_iters)
            residual = residual - codebook[idx]

    @torch.no_grad()
    def refresh_groups(self, seed: int) -> None:
        """Split each level's codebook into diversity groups (size-constrained k-means)."""
        self.groups = []
        for level, codebook in enumerate(self.codebooks):
            k, lo, hi = feasible_bounds(len(codebook), self.cfg.n_clusters, self.cfg.cluster_min, self.cfg.cluster_max)
            _, labels = constrained_kmeans(codebook, k, lo, hi, GROUP_ITERS, GROUP_RESTARTS, seed=seed + level)
            self.groups.append(torch.from_numpy(labels).to(codebook.device))


def last_level_costs(model: "RQVAE", x: np.ndarray) -> np.ndarray:
    """Each item's squared distance to every code of the last level [n, K], from the residual
    that level quantises: what `sinkhorn` and `reassign` collision policies re-assign by."""
    with torch.no_grad():
        return squared_distances(model.residuals(x)[:, -1], model.codebooks[-1].detach()).cpu().numpy()


def collision_rate(codes: torch.Tensor | np.ndarray) -> float:
    """(items - distinct code tuples) / items."""
    codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes)
    return (len(codes) - len(np.unique(codes, axis=0))) / len(codes)


# -- glue for the tokenizers ----------------------------------------------------------------------
def checked_embeddings(array: np.ndarray, n_items: int, what: str, owner: str, dim: int | None = None) -> np.ndarray:
    """A float32 [n_items, d] matrix, or a BenchError saying what is wrong with it."""
    from bench.errors import BenchError

    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n_items:
        raise BenchError(f"{owner}: {what} embeddings have shape {array.shape}, expected [{n_items}, d]")
    if dim is not None and array.shape[1] != dim:
        raise BenchError(f"{owner}: {what} embeddings have dimension {array.shape[1]} but the latent "
                         f"dimension is {dim}; train the CF model with hidden size {dim} or set latent_dim={array.shape[1]}")
    if not np.isfinite(array).all():
        raise BenchError(f"{owner}: {what} embeddings contain NaN or infinite values")
    return array
