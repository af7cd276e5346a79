"""The PyTorch side of ``benchmarks/sae_vs_saelens.py``: train one SAELens sparse autoencoder per
(site, width, sparsity) on in-memory activations, the way a skilled SAELens user would, and measure
each on the full data.

Faithful to SAELens (checked against sae-lens 6.54.12 with torch 2.13.0):

- The SAEs are SAELens's own training classes (``StandardTrainingSAE`` for ``relu``,
  ``TopKTrainingSAE``, ``BatchTopKTrainingSAE``, ``JumpReLUTrainingSAE``) with their default
  configuration apart from the width, the sparsity knob and ``device="cpu"``; so their
  initialisation (decoder rows of norm 0.1, encoder = decoder transposed), forward pass and losses
  are SAELens's code.
- Training is SAELens's own ``SAETrainer.fit`` (the loop its language-model runner and its
  ``synthetic.train_toy_sae`` use), fed by a plain iterator over in-memory batches instead of the
  language-model activation store. So every step is SAELens's: Adam(lr, betas=(0.9, 0.999)),
  a constant learning rate, gradient clipping to global norm 1, the dead-latent mask
  (no firing for more than ``dead_feature_window`` = 1000 steps) fed to TopK/BatchTopK's AuxK loss
  and JumpReLU's optional pre-activation loss, BatchTopK's threshold update, the coefficient
  schedulers (no warm-up by default).
- Metrics use the inference SAE SAELens itself saves after training (``save_inference_model`` then
  ``SAE.load_from_disk``): ``StandardSAE``, ``TopKSAE`` (decoder norms folded in), and
  ``JumpReLUSAE`` for jumprelu and for batchtopk (whose global threshold becomes every feature's).

What differs from a ``LanguageModelSAETrainingRunner`` run:

- Batches come from a numpy ``Generator(seed)``: per site one (steps, batch_size) matrix of row
  indices drawn uniformly with replacement, shared by every member of that site (the JAX grid
  trainer also shares a site's batches), instead of a shuffled buffer of language-model activations.
- Activations are not normalised (SAELens's default ``normalize_activations="none"``) unless
  ``normalize=True``, which is SAELens's ``"expected_average_only_in"`` (scale so the mean norm is
  sqrt(d_in)) with the factor taken from the full data rather than 1000 batches, so that the
  estimate neither consumes training batches nor counts as training time; SAELens folds it into
  the weights after training as usual. ``scaling_factors`` (per site) gives that factor
  explicitly instead (still SAELens's ``"expected_average_only_in"`` machinery, folded after
  training), e.g. to train in exactly the units another trainer uses.
- Metrics are measured on ``eval_data`` (per site, e.g. held-out rows) when given, else on the
  training rows.
- No wandb, checkpoints, evals or progress bar (the trainer's tqdm bar is disabled).
- ``wall_seconds`` (and ``cpu_seconds``, process-wide) times ``SAETrainer.fit`` alone, summed over
  members; building the SAEs and the trainers, converting to inference SAEs and measuring are
  excluded.

Runs in its own virtualenv (torch and sae-lens are not dependencies of rljaxinterp)::

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install -e .
    /work/bench-venv/bin/pip install torch==2.13.0
    /work/bench-venv/bin/pip install sae-lens   # 6.54.12
    /work/bench-venv/bin/python benchmarks/saelens_baseline.py   # smoke run on random data
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Iterator

import numpy as np
import torch
import tqdm.auto
from sae_lens import (
    SAE,
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
    TrainingSAE,
)
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.training import sae_trainer as _sae_trainer_module
from sae_lens.training.sae_trainer import SAETrainer

KINDS = ("relu", "topk", "batchtopk", "jumprelu")

# SAETrainer.fit opens a tqdm bar; keep the benchmark's output clean.
_sae_trainer_module.tqdm = functools.partial(tqdm.auto.tqdm, disable=True)


def make_training_sae(kind: str, d_in: int, width: int, sparsity: float) -> TrainingSAE:
    """SAELens's training SAE for ``kind`` with its default settings; ``sparsity`` is the L1
    coefficient (relu), the L0 coefficient (jumprelu) or k (topk, batchtopk)."""
    common = {"d_in": d_in, "d_sae": width, "device": "cpu", "dtype": "float32"}
    if kind == "relu":
        return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=float(sparsity), **common))
    if kind == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=int(sparsity), **common))
    if kind == "batchtopk":
        return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(k=float(sparsity), **common))
    if kind == "jumprelu":
        return JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(l0_coefficient=float(sparsity), **common))
    raise ValueError(f"kind={kind!r}; need one of {KINDS}")


def _batches(x: torch.Tensor, indices: np.ndarray) -> Iterator[torch.Tensor]:
    for idx in indices:
        yield x[torch.from_numpy(idx)]


def _to_inference(sae: TrainingSAE) -> SAE:
    """The SAE SAELens saves for inference after training, loaded back."""
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device="cpu")


@torch.no_grad()
def measure(sae: SAE, x: torch.Tensor, chunk: int = 8192) -> dict[str, float | int]:
    """l0 (mean nonzero features per row), fve (1 - SSE / total sum of squares about the
    mean row) and dead (features that never fire) on all rows of ``x``."""
    sae.eval()
    mean = x.double().mean(0)
    nonzero = 0
    sse = 0.0
    sst = 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for start in range(0, x.shape[0], chunk):
        rows = x[start:start + chunk]
        features = sae.encode(rows)
        if features.is_sparse:
            features = features.to_dense()
        active = features != 0
        nonzero += int(active.sum())
        fired |= active.any(0)
        sse += float(((rows - sae.decode(features)).double() ** 2).sum())
        sst += float(((rows.double() - mean) ** 2).sum())
    return {"l0": nonzero / x.shape[0], "fve": 1.0 - sse / sst, "dead": int((~fired).sum())}


def train_saelens_grid(
    data: dict[str, np.ndarray],
    kind: str,
    widths: list[int],
    sparsities: list[float],
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    *,
    normalize: bool = False,
    dead_feature_window: int = 1000,
    scaling_factors: dict[str, float] | None = None,
    eval_data: dict[str, np.ndarray] | None = None,
) -> dict:
    """Train one SAELens SAE of ``kind`` per (site, width, sparsity), one after another.

    ``data`` maps a site name to its activations (rows, d). Returns ``{"wall_seconds": seconds
    inside SAETrainer.fit summed over members, "cpu_seconds": the process's CPU seconds in them,
    "members": [{"site", "width", "sparsity", "seconds",
    "l0", "fve", "dead"}, ...]}`` with the metrics measured after training on all rows of the
    site in ``eval_data`` (default: ``data``). ``normalize``, ``scaling_factors`` and
    ``dead_feature_window`` are SAELens settings (see the module docstring); their defaults are
    SAELens's.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; need one of {KINDS}")
    rng = np.random.default_rng(seed)
    wall = cpu = 0.0
    members = []
    member_index = 0
    for site, rows in data.items():
        x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        if x.ndim != 2:
            raise ValueError(f"site {site!r}: need a (rows, d) array, got shape {tuple(x.shape)}")
        x_eval = x if eval_data is None else torch.from_numpy(np.ascontiguousarray(eval_data[site], dtype=np.float32))
        indices = rng.integers(0, x.shape[0], size=(steps, batch_size))
        if scaling_factors is not None:
            scaling_factor = float(scaling_factors[site])
        else:
            scaling_factor = float(x.shape[1] ** 0.5 / x.norm(dim=-1).mean()) if normalize else None
        for width in widths:
            for sparsity in sparsities:
                torch.manual_seed(seed + member_index)
                member_index += 1
                sae = make_training_sae(kind, x.shape[1], width, sparsity)
                if scaling_factor is not None:
                    sae.cfg.normalize_activations = "expected_average_only_in"
                trainer_cfg = SAETrainerConfig(
                    total_training_samples=steps * batch_size,
                    train_batch_size_samples=batch_size,
                    lr=learning_rate,
                    lr_end=learning_rate,
                    dead_feature_window=dead_feature_window,
                    device="cpu",
                    logger=LoggingConfig(log_to_wandb=False),
                )
                trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_batches(x, indices))
                trainer.activation_scaler.scaling_factor = scaling_factor
                start, cpu_start = time.perf_counter(), time.process_time()
                trained = trainer.fit()
                seconds = time.perf_counter() - start
                wall += seconds
                cpu += time.process_time() - cpu_start
                members.append({"site": site, "width": width, "sparsity": sparsity, "seconds": seconds,
                                **measure(_to_inference(trained), x_eval)})
    return {"wall_seconds": wall, "cpu_seconds": cpu, "members": members}


def _smoke() -> None:
    import json

    gen = np.random.default_rng(0)
    d = 32
    data = {}
    for site in ("site_a", "site_b"):  # sparse combinations of 64 random directions plus noise
        directions = gen.standard_normal((64, d))
        codes = gen.exponential(1.0, (2000, 64)) * (gen.random((2000, 64)) < 0.05)
        data[site] = (codes @ directions + 0.05 * gen.standard_normal((2000, d))).astype(np.float32)
    sparsity = {"relu": [1e-3, 1e-2], "topk": [4, 8], "batchtopk": [4, 8], "jumprelu": [1e-3, 1e-2]}
    for kind in KINDS:
        result = train_saelens_grid(data, kind, widths=[64, 128], sparsities=sparsity[kind], steps=50,
                                    batch_size=256, learning_rate=3e-4, seed=0)
        print(kind, json.dumps(result))


if __name__ == "__main__":
    _smoke()
