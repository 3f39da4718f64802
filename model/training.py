"""Training loop for AuxFormer and its baselines, with checkpoints that resume exactly.

Variants (``TrainConfig.model``), all the same AuxFormer network:

* ``auxformer``: the loss is the equal-weight sum of the cross-entropies of the three heads
  (audio-visual, audio, visual), as the reference, except that an auxiliary head gets no loss
  for a clip whose modality is missing or dropped (see ``variant_loss``).
* ``mult``: the loss is the audio-visual head's alone, the MulT-style fusion baseline; the
  auxiliary branches are computed but get no gradient, so their weights never change.
* ``audio`` and ``video``: one-modality models. The other modality is always given as missing
  (length 0, no steps) in training and evaluation, and the loss is that of the modality's
  auxiliary head (audio, or visual), which reads that modality alone; the rest of the network
  gets no gradient.

Modality drop-out (``auxformer``, ``mult``): each training clip loses its audio with chance
``audio_dropout`` or its video with chance ``video_dropout``, one draw per clip, never both; a
clip whose other modality is already missing keeps what it has. A dropped modality is given as
length 0.

The optimizer is AdamW (plain Adam, the reference's, at the default weight decay of 0); the
learning rate is constant (the reference's) or follows a cosine from ``lr`` down to 0 over the
run's steps, set from the step number so that a resumed run follows it exactly.

Each epoch trains on the train split, then scores the development split with both modalities
and no randomness: the loss being trained, and accuracy and macro-F1 of the head the variant
predicts with (model.evaluation.PREDICTING_HEAD: for AuxFormer with both modalities, the average
of its three heads' logits, the reference's prediction; a baseline: its own head). The best
epoch by ``select_by`` (dev loss, as the reference, or dev macro-F1) is kept in best.pt. last.pt (written atomically after every epoch)
holds the weights, optimizer and random state and the metrics so far, so that a run resumed
from it continues exactly as if it had not stopped; a run may also be extended to more epochs.
Nothing here reads the test split: the caller gives the train and development data.

Distributed training: started under torchrun (``WORLD_SIZE`` > 1 in the environment),
``init_distributed`` joins the process group (NCCL on GPUs, one per process, else gloo) and
training wraps the model in DistributedDataParallel. Every process starts from the same
weights, takes its share of each epoch's batches (``--batch-size`` is per process) and its own
drop-out draws; gradients are averaged. Each process scores the whole development split (the
same numbers everywhere, no exchange needed) and only rank 0 writes files or prints. last.pt
keeps every process's random state, so a run resumed with as many processes continues exactly.
"""
from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import f1_score
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.auxformer import AuxFormer, AuxFormerConfig, AuxFormerOutputs
from model.data import Batch, ClipDataset, evaluation_loader, training_loader
from model.evaluation import PREDICTING_HEAD, head_logits

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"
CURVE_FILE = "curve.png"
SELECT_BY = {"loss": "dev_loss", "macro_f1": "dev_macro_f1"}
# Options that may differ between a run and its resumption: they do not change what is computed.
FREE_ON_RESUME = ("epochs", "device", "num_workers")
# Process r of a distributed run seeds its dropout and modality drop-out with seed + r * this.
PROCESS_SEED_STRIDE = 1_000_003
METRIC_COLUMNS = ("epoch", "train_loss", "dev_loss", "dev_accuracy", "dev_macro_f1", "seconds",
                  "train_clips_per_second", "data_wait_share")


class TrainingError(ValueError):
    """A config or run folder that training cannot go on with; the message says what to do."""


class Variant(NamedTuple):
    loss_heads: tuple[str, ...]  # fields of AuxFormerOutputs whose losses are summed
    uses_audio: bool
    uses_video: bool


VARIANTS = {
    "auxformer": Variant(("audio_visual", "audio", "visual"), True, True),
    "mult": Variant(("audio_visual",), True, True),
    "audio": Variant(("audio",), True, False),
    "video": Variant(("visual",), False, True),
}
LR_SCHEDULES = ("constant", "cosine")


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    model: str = _option("auxformer", f"what to train: {', '.join(VARIANTS)} (see model.training)")
    epochs: int = _option(30, "training epochs")
    batch_size: int = _option(32, "clips per batch")
    lr: float = _option(7.25e-4, "Adam learning rate (the reference's)")
    weight_decay: float = _option(0.0, "decoupled weight decay (AdamW); 0, the reference's, is plain Adam")
    lr_schedule: str = _option("constant", "constant (the reference's) or cosine: decay to 0 over the epochs, per step")
    seed: int = _option(0, "seed of the initial weights, batch order, drop-outs")
    audio_dropout: float = _option(0.2, "chance that a training clip's audio is given as missing")
    video_dropout: float = _option(0.2, "chance that a training clip's video is given as missing (never both)")
    select_by: str = _option("loss", "keep the epoch with the lowest dev loss (loss) or highest dev macro-F1 (macro_f1)")
    device: str = _option("auto", "auto (cuda when available), cpu or cuda")
    mixed_precision: bool = _option(True, "bfloat16 autocast when on CUDA (never on CPU)")
    num_workers: int = _option(2, "data loading processes (0: load in the training process)")

    def __post_init__(self) -> None:
        if self.model not in VARIANTS:
            raise TrainingError(f"unknown model {self.model!r}; choose one of {', '.join(VARIANTS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.select_by not in SELECT_BY:
            raise TrainingError(f"--select-by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise TrainingError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        rates = (self.audio_dropout, self.video_dropout)
        if min(rates) < 0 or sum(rates) > 1:
            raise TrainingError(f"modality drop-out rates must be at least 0 and sum to at most 1, got {rates}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.num_workers < 0 or self.weight_decay < 0:
            raise TrainingError("--epochs and --batch-size must be at least 1, --lr positive, --num-workers and "
                                "--weight-decay at least 0")


@dataclass
class TrainResult:
    history: list[dict]  # one row of METRIC_COLUMNS per epoch
    best: dict  # {"metric", "value", "epoch"}


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job; the defaults describe a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device_name: str, environ=os.environ) -> Distributed:
    """Join torchrun's process group when there is one (NCCL when training on CUDA, else gloo)."""
    world_size = int(environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        on_cuda = resolve_device(device_name).type == "cuda"
        dist.init_process_group("nccl" if on_cuda else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device to run on; under torchrun, the GPU of this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda, but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def drop_modalities(audio_lengths: torch.Tensor, video_lengths: torch.Tensor, audio_rate: float, video_rate: float,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths with dropped modalities set to 0: one uniform draw per clip decides audio, video or neither."""
    draw = torch.rand(len(audio_lengths), generator=generator).to(audio_lengths.device)
    drop_audio = (draw < audio_rate) & (video_lengths > 0)
    drop_video = (draw >= audio_rate) & (draw < audio_rate + video_rate) & (audio_lengths > 0)
    return audio_lengths.masked_fill(drop_audio, 0), video_lengths.masked_fill(drop_video, 0)


def for_variant(batch: Batch, variant: Variant) -> Batch:
    """The batch a variant sees: a modality it does not use has no steps and length 0."""
    if not variant.uses_audio:
        batch = batch._replace(audio=batch.audio[:, :0], audio_lengths=torch.zeros_like(batch.audio_lengths))
    if not variant.uses_video:
        batch = batch._replace(video=batch.video[:, :0], video_lengths=torch.zeros_like(batch.video_lengths))
    return batch


def head_losses(outputs: AuxFormerOutputs, batch: Batch, variant: Variant) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per head of the variant: the cross-entropy summed over the clips the head has input for, and their number.

    Soft targets are class probabilities. A head whose modality is missing for a clip gets no
    loss for it: its input is a constant stand-in, so the loss would only teach the class prior,
    and the stand-in's all-zero steps put every LayerNorm of the auxiliary encoder at zero
    variance, where backpropagation multiplies by 1/sqrt(eps) per norm and overflows to NaN
    within a few layers (seen with the reference's five layers on the demo features).
    """
    has_audio, has_video = batch.audio_lengths > 0, batch.video_lengths > 0
    has_input = {"audio_visual": has_audio | has_video, "audio": has_audio, "visual": has_video}
    sums = []
    for head in variant.loss_heads:
        losses = F.cross_entropy(getattr(outputs, head).float(), batch.targets, reduction="none")
        seen = has_input[head].float()
        sums.append(((losses * seen).sum(), seen.sum()))
    return sums


def variant_loss(outputs: AuxFormerOutputs, batch: Batch, variant: Variant) -> torch.Tensor:
    """The loss trained: the sum over the variant's heads of their mean cross-entropy (see head_losses)."""
    return sum(total / count.clamp(min=1) for total, count in head_losses(outputs, batch, variant))


def _forward(model: torch.nn.Module, batch: Batch, device: torch.device, mixed_precision: bool) -> AuxFormerOutputs:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision and device.type == "cuda"):
        return model(batch.audio, batch.audio_lengths, batch.video, batch.video_lengths)


class EpochStats(NamedTuple):
    loss: float  # mean per clip, over all processes
    clips_per_second: float  # this process's training throughput, data loading included
    data_wait_share: float  # share of this process's epoch spent waiting for the next batch


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The rate of optimizer step ``step`` (counted from 0) of a run of ``total_steps``."""
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))


def train_epoch(model: torch.nn.Module, loader: Iterable[Batch], optimizer: torch.optim.Optimizer,
                config: TrainConfig, dropout_generator: torch.Generator, device: torch.device,
                first_step: int, total_steps: int) -> EpochStats:
    """One pass over the training batches, the first of them the run's step ``first_step`` of ``total_steps``.

    The learning rate is set from the step number alone, so a resumed run follows the schedule exactly.
    """
    variant = VARIANTS[config.model]
    model.train()
    total, clips, waited = 0.0, 0, 0.0
    started = ready = time.perf_counter()
    for step, batch in enumerate(loader, start=first_step):
        waited += time.perf_counter() - ready
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, total_steps)
        batch = for_variant(batch, variant).to(device)
        if variant.uses_audio and variant.uses_video:
            audio_lengths, video_lengths = drop_modalities(batch.audio_lengths, batch.video_lengths,
                                                           config.audio_dropout, config.video_dropout,
                                                           dropout_generator)
            batch = batch._replace(audio_lengths=audio_lengths, video_lengths=video_lengths)
        loss = variant_loss(_forward(model, batch, device, config.mixed_precision), batch, variant)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch.clip_ids)  # .item() waits for the GPU: the step is over
        clips += len(batch.clip_ids)
        ready = time.perf_counter()
    elapsed = time.perf_counter() - started
    own_clips = clips
    if dist.is_initialized():
        sums = torch.tensor([total, clips], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        total, clips = sums.tolist()
    return EpochStats(total / clips, own_clips / elapsed, waited / elapsed)


@torch.no_grad()
def evaluate(model: AuxFormer, loader: Iterable[Batch], config: TrainConfig, device: torch.device) -> dict[str, float]:
    """Loss (as trained, each head's mean over the whole split), accuracy and macro-F1 of the predicting head.

    In eval mode and without modality drop-out; the same whatever the batching.
    """
    variant = VARIANTS[config.model]
    model.eval()
    sums, counts = [0.0] * len(variant.loss_heads), [0.0] * len(variant.loss_heads)
    labels, predictions = [], []
    for batch in loader:
        batch = for_variant(batch, variant).to(device)
        outputs = _forward(model, batch, device, config.mixed_precision)
        for head, (total, count) in enumerate(head_losses(outputs, batch, variant)):
            sums[head] += total.item()
            counts[head] += count.item()
        labels += batch.labels.tolist()
        scored = head_logits(*(output.float() for output in outputs), True, True)[PREDICTING_HEAD[config.model]]
        predictions += scored.argmax(dim=-1).tolist()
    correct = sum(label == prediction for label, prediction in zip(labels, predictions))
    return {"loss": sum(total / max(count, 1) for total, count in zip(sums, counts)),
            "accuracy": correct / len(labels),
            "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0))}


def input_statistics(data: ClipDataset, audio_dim: int, video_dim: int) -> tuple[torch.Tensor, ...]:
    """Per-feature mean and standard deviation of the audio and of the video over every step of ``data``.

    Returns (audio mean, audio std, video mean, video std), computed in float64. A modality no clip
    has gets the identity (mean 0, std 1).
    """
    sums = {"audio": [0.0, 0.0, 0], "video": [0.0, 0.0, 0]}
    for example in tqdm(data, desc="input statistics", unit="clip", leave=False, disable=None):
        for name, steps in (("audio", example.audio), ("video", example.video)):
            steps = steps.double()
            sums[name][0] = sums[name][0] + steps.sum(dim=0)
            sums[name][1] = sums[name][1] + (steps**2).sum(dim=0)
            sums[name][2] += len(steps)
    statistics = []
    for (total, squares, count), dim in zip(sums.values(), (audio_dim, video_dim)):
        if not count:
            statistics += [torch.zeros(dim), torch.ones(dim)]
            continue
        mean = total / count
        statistics += [mean.float(), (squares / count - mean**2).clamp(min=0).sqrt().float()]
    return tuple(statistics)


def save_atomically(state: dict, path: Path) -> None:
    """torch.save through a temporary file, so an interruption leaves the previous file whole."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def completed_epochs(run_dir: Path) -> int:
    """Epochs finished by the run in ``run_dir`` (0 when it has no last.pt)."""
    path = run_dir / LAST_CHECKPOINT
    return load_checkpoint(path)["epoch"] if path.is_file() else 0


def _random_states(dropout_generator: torch.Generator, distributed: Distributed) -> list[dict]:
    """Every process's random state, rank by rank (gathered to all processes)."""
    state = {"torch": torch.get_rng_state(), "modality_dropout": dropout_generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if distributed.world_size == 1:
        return [state]
    states = [None] * distributed.world_size
    dist.all_gather_object(states, state)
    return states


def _restore_random_state(states: list[dict], dropout_generator: torch.Generator, distributed: Distributed) -> bool:
    """This process's saved random state; False (and nothing restored) if the run had another process count."""
    if len(states) != distributed.world_size:
        return False
    state = states[distributed.rank]
    torch.set_rng_state(state["torch"])
    dropout_generator.set_state(state["modality_dropout"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return True


def _check_resumable(checkpoint: dict, model_config: AuxFormerConfig, config: TrainConfig, path: Path) -> None:
    expected = model_config.to_dict()
    differences = [f"model {name} {value} != {expected.get(name)}"
                   for name, value in checkpoint["model_config"].items() if expected.get(name) != value]
    current = asdict(config)
    differences += [f"{name} {value} != {current.get(name)}" for name, value in checkpoint["train_config"].items()
                    if name not in FREE_ON_RESUME and current.get(name) != value]
    if config.lr_schedule != "constant" and checkpoint["train_config"]["epochs"] != config.epochs:
        differences.append(f"epochs {checkpoint['train_config']['epochs']} != {config.epochs} under the "
                           f"{config.lr_schedule} schedule, which spans the run's epochs")
    if differences:
        raise TrainingError(f"{path} was trained with other settings ({'; '.join(differences)}); "
                            "resume with the same settings, or start over (FORCE=1)")


class RunLog:
    """Prints a line and appends it, time-stamped, to the run's log file (when ``enabled``: rank 0's)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        print(message, flush=True)
        with self.path.open("a") as stream:
            stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def write_metrics(history: list[dict], path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
    os.replace(temporary, path)


def plot_curve(history: list[dict], best: dict, path: Path) -> None:
    """Train and dev loss, and dev macro-F1, per epoch; the kept epoch marked."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    loss_axes, f1_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [row["train_loss"] for row in history], marker=".", label="train")
    loss_axes.plot(epochs, [row["dev_loss"] for row in history], marker=".", label="development")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    f1_axes.plot(epochs, [row["dev_macro_f1"] for row in history], marker=".", color="tab:green")
    f1_axes.set(xlabel="epoch", ylabel="macro-F1", title="development macro-F1", ylim=(0, 1))
    for axes in (loss_axes, f1_axes):
        axes.axvline(best["epoch"], color="grey", linestyle=":", label=f"kept (epoch {best['epoch']})")
        axes.grid(alpha=0.3)
    loss_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _is_better(value: float, best: dict | None, select_by: str) -> bool:
    if best is None:
        return True
    return value < best["value"] if select_by == "loss" else value > best["value"]


def train(model_config: AuxFormerConfig, config: TrainConfig, train_data: ClipDataset, dev_data: ClipDataset,
          run_dir: Path, classes: tuple[str, ...] = (), distributed: Distributed = Distributed()) -> TrainResult:
    """Train into ``run_dir``, resuming from its last.pt when there is one; returns the metrics and the kept epoch."""
    if not len(train_data) or not len(dev_data):
        raise TrainingError(f"nothing to train on: {len(train_data)} train and {len(dev_data)} development clips")
    if distributed.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir / LOG_FILE, enabled=distributed.is_main)
    device = resolve_device(config.device, distributed.local_rank)
    torch.manual_seed(config.seed)  # the same initial weights in every process
    model = AuxFormer(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # Each process draws its own dropout masks and modality drop-outs.
    process_seed = config.seed + PROCESS_SEED_STRIDE * distributed.rank
    torch.manual_seed(process_seed)
    dropout_generator = torch.Generator().manual_seed(process_seed)
    history, best, start = [], None, 1
    last_path = run_dir / LAST_CHECKPOINT
    if last_path.is_file():
        checkpoint = load_checkpoint(last_path)
        _check_resumable(checkpoint, model_config, config, last_path)
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        history, best, start = checkpoint["history"], checkpoint["best"], checkpoint["epoch"] + 1
        log(f"resuming {run_dir} after epoch {checkpoint['epoch']}")
        if not _restore_random_state(checkpoint["random_state"], dropout_generator, distributed):
            log(f"the run had {len(checkpoint['random_state'])} processes and now has {distributed.world_size}: "
                "it goes on from the same weights, but with other random draws than an uninterrupted run")
    else:
        model.set_input_statistics(*input_statistics(train_data, model_config.audio_dim, model_config.video_dim))
    network = model
    if distributed.world_size > 1:
        # Baselines leave parts of the network without gradient, and so can a batch whose clips
        # all lack one modality.
        network = DistributedDataParallel(model, find_unused_parameters=True)
    log(f"training {config.model} on {device}"
        f"{f' in {distributed.world_size} processes' if distributed.world_size > 1 else ''}: "
        f"{len(train_data)} train, {len(dev_data)} development clips, "
        f"{sum(p.numel() for p in model.parameters()):,} weights")

    train_loader = training_loader(train_data, config.batch_size, config.seed, config.num_workers,
                                   distributed.rank, distributed.world_size)
    dev_loader = evaluation_loader(dev_data, config.batch_size, config.num_workers)
    metric = SELECT_BY[config.select_by]
    common = {"model_config": model_config.to_dict(), "train_config": asdict(config), "classes": list(classes)}
    for epoch in range(start, config.epochs + 1):
        started = time.monotonic()
        train_loader.batch_sampler.set_epoch(epoch)
        batches = tqdm(train_loader, desc=f"epoch {epoch}", unit="batch", leave=False,
                       disable=None if distributed.is_main else True)
        epoch_stats = train_epoch(network, batches, optimizer, config, dropout_generator, device,
                                  first_step=(epoch - 1) * len(train_loader),
                                  total_steps=config.epochs * len(train_loader))
        train_loss = epoch_stats.loss
        scores = evaluate(model, dev_loader, config, device)
        random_states = _random_states(dropout_generator, distributed)
        row = {"epoch": epoch, "train_loss": train_loss, "dev_loss": scores["loss"],
               "dev_accuracy": scores["accuracy"], "dev_macro_f1": scores["macro_f1"],
               "seconds": round(time.monotonic() - started, 3),
               "train_clips_per_second": round(epoch_stats.clips_per_second, 3),
               "data_wait_share": round(epoch_stats.data_wait_share, 4)}
        history.append(row)
        improved = _is_better(row[metric], best, config.select_by)
        if improved:
            best = {"metric": metric, "value": row[metric], "epoch": epoch}
        if distributed.is_main:
            if improved:
                save_atomically({**common, "epoch": epoch, "best": best, "model_state": model.state_dict()},
                                run_dir / BEST_CHECKPOINT)
            save_atomically({**common, "epoch": epoch, "best": best, "history": history,
                             "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                             "random_state": random_states}, last_path)
            write_metrics(history, run_dir / METRICS_FILE)
            plot_curve(history, best, run_dir / CURVE_FILE)
        log(f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, dev loss {scores['loss']:.4f}, "
            f"accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f} "
            f"({row['seconds']:.1f} s, {epoch_stats.clips_per_second:.0f} clips/s, "
            f"{epoch_stats.data_wait_share:.0%} waiting for data){' *' if improved else ''}")
    log(f"kept epoch {best['epoch']} ({metric} {best['value']:.4f}) in {run_dir / BEST_CHECKPOINT}")
    distributed.barrier()  # no process returns before rank 0 has written the last checkpoint
    return TrainResult(history, best)
