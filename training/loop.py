"""The training loop: modality drop-out, the variant's loss, epochs, development scoring, the kept epoch.

Modality drop-out (``auxformer``, ``mult``): a training clip loses its audio with chance
``audio_dropout`` or its video with chance ``video_dropout``, never both, from one draw per clip
(``dropout_unit`` clip) or one draw for the whole batch (``batch``, the reference's train.py); a
clip whose other modality is already missing keeps what it has. A dropped modality is removed as
every removal is (model.variants.remove_modalities).

The loss is the mean over the variant's loss heads (model.variants) of their mean
cross-entropy: for ``auxformer`` the reference's weights of 1/3 each. An auxiliary head gets no
loss for a clip whose modality is missing or dropped, unless ``missing_head_loss`` (the
reference's behaviour, which needs the model's learned stand-in; see ``head_losses``).
The optimizer is AdamW with weight decay on the 2-D weights only (not on norms, biases or the
learnable residual scalars; at the default decay of 0 it is the reference's plain Adam); the
learning rate is constant (the reference's) or follows a cosine from ``lr`` down to 0, set from
the step number so that a resumed run follows it exactly; gradients may be clipped by norm.

Each epoch trains on the train split, then scores the development split in float32 with both
modalities and no randomness: the loss being trained, and accuracy and macro-F1 of the head the
variant predicts with (the same head and precision test evaluation uses). The best epoch by
``select_by`` is kept in best.pt; last.pt (after every epoch) holds what an exact resume needs.
Nothing here reads the test split: the caller gives the train and development data.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from common.device import resolve_device
from model.auxformer import AuxFormer, AuxFormerConfig, AuxFormerOutputs
from model.data import Batch, ClipDataset, evaluation_loader, training_loader
from model.variants import VARIANTS, Variant, head_logits, remove_modalities
from training.checkpoint import check_resumable, random_states, restore_random_state
from training.config import SELECT_BY, TrainConfig, TrainingError
from training.distributed import Distributed
from training.run_folder import BEST_CHECKPOINT, LAST_CHECKPOINT, RunFolder

# Process r of a distributed run seeds its dropout and modality drop-out with seed + r * this.
PROCESS_SEED_STRIDE = 1_000_003


@dataclass
class TrainResult:
    history: list[dict]  # one row of run_folder.METRIC_COLUMNS per epoch
    best: dict  # {"metric", "value", "epoch"}


def drop_modalities(audio_lengths: torch.Tensor, video_lengths: torch.Tensor, audio_rate: float, video_rate: float,
                    generator: torch.Generator, unit: str = "clip") -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip, whether to keep its audio and its video: one uniform draw decides audio, video or neither,
    drawn per clip or, with ``unit`` batch, once for all the clips."""
    draws = len(audio_lengths) if unit == "clip" else 1
    draw = torch.rand(draws, generator=generator).to(audio_lengths.device)
    drop_audio = (draw < audio_rate) & (video_lengths > 0)
    drop_video = (draw >= audio_rate) & (draw < audio_rate + video_rate) & (audio_lengths > 0)
    return ~drop_audio, ~drop_video


def head_losses(outputs: AuxFormerOutputs, batch: Batch, variant: Variant,
                missing_head_loss: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per head of the variant: the cross-entropy summed over the clips the head is trained on, and their number.

    Soft targets are class probabilities. By default a head whose modality is missing for a clip
    gets no loss for it: its input is a constant stand-in, so the loss would only teach the
    class prior. ``missing_head_loss`` trains it anyway, as the reference does (its zeroed input
    still reaches the head); that needs the model's learned stand-in, as the zero one puts the
    auxiliary encoder's LayerNorms at zero variance (model.auxformer) and its gradients at NaN.
    """
    has_audio, has_video = batch.audio_lengths > 0, batch.video_lengths > 0
    every_clip = torch.ones_like(has_audio)
    has_input = {"main": has_audio | has_video, "audio": every_clip if missing_head_loss else has_audio,
                 "visual": every_clip if missing_head_loss else has_video}
    sums = []
    for head in variant.loss_heads:
        losses = F.cross_entropy(getattr(outputs, head).float(), batch.targets, reduction="none")
        seen = has_input[head].float()
        sums.append(((losses * seen).sum(), seen.sum()))
    return sums


def variant_loss(outputs: AuxFormerOutputs, batch: Batch, variant: Variant,
                 missing_head_loss: bool = False) -> torch.Tensor:
    """The loss trained: the mean over the variant's heads of their mean cross-entropy (see head_losses)."""
    sums = head_losses(outputs, batch, variant, missing_head_loss)
    return sum(total / count.clamp(min=1) for total, count in sums) / len(sums)


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


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW that decays only the 2-D weights: decaying norms, biases and residual scalars toward 0
    would only pull the network away from its working point."""
    decayed = [p for p in model.parameters() if p.ndim >= 2]
    kept = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decayed, "weight_decay": config.weight_decay},
                              {"params": kept, "weight_decay": 0.0}], lr=config.lr)


def train_epoch(model: torch.nn.Module, loader: Iterable[Batch], optimizer: torch.optim.Optimizer,
                config: TrainConfig, dropout_generator: torch.Generator, device: torch.device,
                first_step: int, total_steps: int) -> EpochStats:
    """One pass over the training batches, the first of them the run's step ``first_step`` of ``total_steps``."""
    variant = VARIANTS[config.model]
    model.train()
    total, clips, waited = 0.0, 0, 0.0
    started = ready = time.perf_counter()
    for step, batch in enumerate(loader, start=first_step):
        waited += time.perf_counter() - ready
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, total_steps)
        batch = variant.inputs(batch).to(device)
        if variant.uses_audio and variant.uses_video:
            batch = remove_modalities(batch, *drop_modalities(batch.audio_lengths, batch.video_lengths,
                                                              config.audio_dropout, config.video_dropout,
                                                              dropout_generator, config.dropout_unit))
        loss = variant_loss(_forward(model, batch, device, config.mixed_precision), batch, variant,
                            config.missing_head_loss)
        if not torch.isfinite(loss):
            clips = ", ".join(batch.clip_ids[:3]) + (", ..." if len(batch.clip_ids) > 3 else "")
            raise TrainingError(f"the training loss became {loss.item()} at step {step} (clips {clips}); no weights "
                                "of this step were kept. Lower --lr, or try --grad-clip 1.0, and retrain (FORCE=1)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
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

    In eval mode, float32 and without modality drop-out; the same whatever the batching.
    """
    variant = VARIANTS[config.model]
    model.eval()
    sums, counts = [0.0] * len(variant.loss_heads), [0.0] * len(variant.loss_heads)
    labels, predictions = [], []
    for batch in loader:
        batch = variant.inputs(batch).to(device)
        outputs = _forward(model, batch, device, mixed_precision=False)
        for head, (total, count) in enumerate(head_losses(outputs, batch, variant, config.missing_head_loss)):
            sums[head] += total.item()
            counts[head] += count.item()
        labels += batch.labels.tolist()
        scored = head_logits(*outputs, True, True)[variant.predicting_head]
        predictions += scored.argmax(dim=-1).tolist()
    correct = sum(label == prediction for label, prediction in zip(labels, predictions))
    return {"loss": sum(total / max(count, 1) for total, count in zip(sums, counts)) / len(sums),
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


def _device_text(config: TrainConfig, device: torch.device) -> str:
    """The device, and why when --device auto did not find CUDA (a CPU-only torch, or a driver it cannot use)."""
    if config.device == "auto" and device.type == "cpu":
        return "cpu (--device auto: CUDA is not available, torch.cuda.is_available() is False)"
    return str(device)


def _is_better(value: float, best: dict | None, select_by: str) -> bool:
    if best is None:
        return True
    return value < best["value"] if select_by == "loss" else value > best["value"]


def check_trainable(model_config: AuxFormerConfig, config: TrainConfig) -> None:
    """TrainingError for options that cannot train together."""
    if config.missing_head_loss and model_config.missing_stand_in != "learned":
        raise TrainingError("--missing-head-loss needs --missing-stand-in learned: the zero stand-in puts the "
                            "auxiliary encoders' LayerNorms at zero variance, and their gradients at NaN")


def train(model_config: AuxFormerConfig, config: TrainConfig, train_data: ClipDataset, dev_data: ClipDataset,
          run: RunFolder, classes: tuple[str, ...] = (), distributed: Distributed = Distributed()) -> TrainResult:
    """Train into the run folder, resuming from its last.pt when there is one; returns metrics and kept epoch."""
    if not len(train_data) or not len(dev_data):
        raise TrainingError(f"nothing to train on: {len(train_data)} train and {len(dev_data)} development clips")
    check_trainable(model_config, config)
    device = resolve_device(config.device, distributed.local_rank)
    budget = config.batch_step_budget(device)
    torch.manual_seed(config.seed)  # the same initial weights in every process
    model = AuxFormer(model_config).to(device)
    optimizer = make_optimizer(model, config)
    # Each process draws its own dropout masks and modality drop-outs.
    process_seed = config.seed + PROCESS_SEED_STRIDE * distributed.rank
    torch.manual_seed(process_seed)
    dropout_generator = torch.Generator().manual_seed(process_seed)
    history, best, start = [], None, 1
    if (run / LAST_CHECKPOINT).is_file():
        checkpoint = run.load_checkpoint(LAST_CHECKPOINT)
        check_resumable(checkpoint, model_config, config, run / LAST_CHECKPOINT, budget)
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        history, best, start = checkpoint["history"], checkpoint["best"], checkpoint["epoch"] + 1
        run.log(f"resuming {run} after epoch {checkpoint['epoch']}")
        if not restore_random_state(checkpoint["random_state"], dropout_generator, device, distributed):
            run.log(f"the run had {len(checkpoint['random_state'])} processes and now has {distributed.world_size}: "
                    "it goes on from the same weights, but with other random draws than an uninterrupted run")
    else:
        model.set_input_statistics(*input_statistics(train_data, model_config.audio_dim, model_config.video_dim))
    network = model
    if distributed.world_size > 1:
        # Baselines leave parts of the network without gradient, and so can a batch whose clips
        # all lack one modality.
        network = DistributedDataParallel(model, find_unused_parameters=True)
    run.log(f"training {config.model} on {_device_text(config, device)}"
            f"{f' in {distributed.world_size} processes' if distributed.world_size > 1 else ''}: "
            f"{len(train_data)} train, {len(dev_data)} development clips, "
            f"{sum(p.numel() for p in model.parameters()):,} weights"
            f"{f', batches of at most {budget:,} padded steps' if budget else ''}")

    train_loader = training_loader(train_data, config.batch_size, config.seed, config.num_workers,
                                   distributed.rank, distributed.world_size, budget)
    dev_loader = evaluation_loader(dev_data, config.batch_size, config.num_workers)
    metric = SELECT_BY[config.select_by]
    common = {"model_config": model_config.to_dict(), "train_config": asdict(config), "classes": list(classes)}
    for epoch in range(start, config.epochs + 1):
        started = time.monotonic()
        train_loader.batch_sampler.set_epoch(epoch)
        batches = tqdm(train_loader, desc=f"epoch {epoch}", unit="batch", leave=False,
                       disable=None if distributed.is_main else True)
        # Under a step budget the batch count varies with the epoch's order; counted per epoch,
        # each epoch still spans its own 1/epochs of the learning-rate schedule.
        epoch_stats = train_epoch(network, batches, optimizer, config, dropout_generator, device,
                                  first_step=(epoch - 1) * len(train_loader),
                                  total_steps=config.epochs * len(train_loader))
        scores = evaluate(model, dev_loader, config, device)
        states = random_states(dropout_generator, device, distributed)
        row = {"epoch": epoch, "train_loss": epoch_stats.loss, "dev_loss": scores["loss"],
               "dev_accuracy": scores["accuracy"], "dev_macro_f1": scores["macro_f1"],
               "seconds": round(time.monotonic() - started, 3),
               "train_clips_per_second": round(epoch_stats.clips_per_second, 3),
               "data_wait_share": round(epoch_stats.data_wait_share, 4)}
        history.append(row)
        improved = _is_better(row[metric], best, config.select_by)
        if improved:
            best = {"metric": metric, "value": row[metric], "epoch": epoch}
            run.save_checkpoint({**common, "epoch": epoch, "best": best, "model_state": model.state_dict()},
                                BEST_CHECKPOINT)
        run.save_checkpoint({**common, "epoch": epoch, "best": best, "history": history,
                             "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                             "random_state": states, "batch_step_budget": budget}, LAST_CHECKPOINT)
        run.write_metrics(history)
        run.plot_curve(history, best)
        run.log(f"epoch {epoch}/{config.epochs}: train loss {epoch_stats.loss:.4f}, dev loss {scores['loss']:.4f}, "
                f"accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f} "
                f"({row['seconds']:.1f} s, {epoch_stats.clips_per_second:.0f} clips/s, "
                f"{epoch_stats.data_wait_share:.0%} waiting for data){' *' if improved else ''}")
    run.log(f"kept epoch {best['epoch']} ({metric} {best['value']:.4f}) in {run / BEST_CHECKPOINT}")
    distributed.barrier()  # no process returns before rank 0 has written the last checkpoint
    return TrainResult(history, best)
