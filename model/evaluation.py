"""Scores of a trained model on a split: three input conditions, each head, and the heads' averages.

Conditions. ``audio_visual`` feeds both modalities; ``audio_only`` removes the video and
``video_only`` the audio. A removed modality is fed as the model takes a missing one: length 0
(see model.auxformer), exactly as modality drop-out removed it during training. A clip that
has lost a modality at extraction (no audio track, no face found) is fed without it in every
condition.

Heads. ``main`` is the audio-visual head, ``audio`` and ``visual`` the auxiliary heads, and
``average`` the mean of the three heads' logits, which is the reference's prediction (its
test.py). ``present_average`` averages only the heads whose modality is present in the
condition (main and audio when the video is removed; main and visual when the audio is);
with both modalities it is ``average``. Baselines have one trained head and are scored on it.

Scores per condition and head: accuracy, F1, precision and recall (macro and micro), per-class
precision, recall, F1 and support, and the confusion matrix (rows: true class, columns:
predicted).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from model.auxformer import AuxFormer
from model.data import Batch, ClipDataset, evaluation_loader

CONDITIONS = {"audio_visual": (True, True), "audio_only": (True, False), "video_only": (False, True)}
ALL_HEADS = ("main", "audio", "visual", "average", "present_average")
# The heads each trained variant is scored on, and the conditions that give it its input.
VARIANT_HEADS = {"auxformer": ALL_HEADS, "mult": ("main",), "audio": ("audio",), "video": ("visual",)}
VARIANT_CONDITIONS = {"auxformer": tuple(CONDITIONS), "mult": tuple(CONDITIONS), "audio": ("audio_only",),
                      "video": ("video_only",)}
# The head a variant's predictions come from (prediction, the confusion figure). For AuxFormer,
# the present heads' average: it is the reference's average when both modalities are there, and
# it never averages in a head that has no input. On the demo test split (make demo, seeds 0, 1
# and 2) it scores 0.517, 0.546 and 0.581 against 0.188, 0.288 and 0.167 for the average of all
# three without the video; without the audio 0.461, 0.362 and 0.473 against 0.451, 0.529 and
# 0.348, so it is not always better there: report.md shows both for every run.
PREDICTING_HEAD = {"auxformer": "present_average", "mult": "main", "audio": "audio", "video": "visual"}


def remove_modalities(batch: Batch, keep_audio: bool, keep_video: bool) -> Batch:
    """The batch with a removed modality given as missing (length 0)."""
    if not keep_audio:
        batch = batch._replace(audio_lengths=torch.zeros_like(batch.audio_lengths))
    if not keep_video:
        batch = batch._replace(video_lengths=torch.zeros_like(batch.video_lengths))
    return batch


def head_logits(main: torch.Tensor, audio: torch.Tensor, visual: torch.Tensor, keep_audio: bool,
                keep_video: bool) -> dict[str, torch.Tensor]:
    """Every head of ALL_HEADS from the model's three outputs, for a condition."""
    present = [main] + [audio] * keep_audio + [visual] * keep_video
    return {"main": main, "audio": audio, "visual": visual, "average": (main + audio + visual) / 3,
            "present_average": torch.stack(present).mean(dim=0)}


@torch.no_grad()
def condition_logits(model: AuxFormer, data: ClipDataset, condition: str, batch_size: int,
                     device: torch.device) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Logits of every head (clips x classes), the labels and the clip ids, in the split's order."""
    keep_audio, keep_video = CONDITIONS[condition]
    model.eval()
    logits: dict[str, list[np.ndarray]] = {head: [] for head in ALL_HEADS}
    labels, clip_ids = [], []
    for batch in evaluation_loader(data, batch_size, num_workers=0):
        batch = remove_modalities(batch, keep_audio, keep_video).to(device)
        outputs = model(batch.audio, batch.audio_lengths, batch.video, batch.video_lengths)
        for head, values in head_logits(*(output.float() for output in outputs), keep_audio, keep_video).items():
            logits[head].append(values.cpu().numpy())
        labels.append(batch.labels.cpu().numpy())
        clip_ids += batch.clip_ids
    return {head: np.concatenate(values) for head, values in logits.items()}, np.concatenate(labels), clip_ids


def scores(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro and micro F1/precision/recall, per-class scores and the confusion matrix."""
    indices = list(range(len(classes)))
    result = {"clips": int(len(labels)), "accuracy": float(np.mean(labels == predictions))}
    for average in ("macro", "micro"):
        precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, labels=indices,
                                                                   average=average, zero_division=0)
        result.update({f"f1_{average}": float(f1), f"precision_{average}": float(precision),
                       f"recall_{average}": float(recall)})
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=indices,
                                                                     zero_division=0)
    result["per_class"] = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                  "support": int(support[i])} for i, name in enumerate(classes)}
    result["confusion"] = confusion_matrix(labels, predictions, labels=indices).tolist()
    return result


def evaluate_model(model: AuxFormer, data: ClipDataset, variant: str, classes: Sequence[str], batch_size: int,
                   device: torch.device) -> dict[str, dict[str, dict]]:
    """{condition: {head: scores}} for the conditions and heads of ``variant``."""
    results = {}
    for condition in VARIANT_CONDITIONS[variant]:
        logits, labels, _ = condition_logits(model, data, condition, batch_size, device)
        results[condition] = {head: scores(labels, logits[head].argmax(axis=1), classes)
                              for head in VARIANT_HEADS[variant]}
    return results


def results_table(results: dict[str, dict[str, dict]], metric: str = "f1_macro") -> str:
    """A markdown table of one metric: a row per condition, a column per head."""
    heads = list(next(iter(results.values())))
    lines = ["| condition | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for condition, by_head in results.items():
        lines.append(f"| {condition} | " + " | ".join(f"{by_head[head][metric]:.3f}" for head in heads) + " |")
    return "\n".join(lines)


def plot_confusions(results: dict[str, dict[str, dict]], head: str, classes: Sequence[str], path, title: str) -> None:
    """One row-normalised confusion matrix per condition, with the clip counts written in."""
    figure = Figure(figsize=(4.6 * len(results), 4.4))
    FigureCanvasAgg(figure)
    for axes, (condition, by_head) in zip(np.atleast_1d(figure.subplots(1, len(results))), results.items()):
        counts = np.array(by_head[head]["confusion"])
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for row in range(len(classes)):
            for column in range(len(classes)):
                axes.text(column, row, counts[row, column], ha="center", va="center", fontsize=8,
                          color="white" if shares[row, column] > 0.5 else "black")
        axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        axes.set_yticks(range(len(classes)), classes)
        axes.set(xlabel="predicted", ylabel="true",
                 title=f"{condition}: macro-F1 {by_head[head]['f1_macro']:.3f}")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
