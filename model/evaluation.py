"""Scores of a trained model on a split: three input conditions, each head, and the heads' averages.

Conditions (model.variants.CONDITIONS). ``audio_visual`` feeds both modalities; ``audio_only``
removes the video and ``video_only`` the audio, through model.variants.remove_modalities, the
same function training's modality drop-out uses. A clip that
has lost a modality at extraction (no audio track, no face found) is fed without it in every
condition.

Heads (model.variants). ``main`` is the audio-visual head, ``audio`` and ``visual`` the auxiliary
heads, and ``average`` the mean of the three heads' logits, which is the reference's prediction
(its test.py). ``present_average`` averages only the heads whose modality is present in the
condition (main and audio when the video is removed; main and visual when the audio is); with
both modalities it is ``average``. Baselines have one trained head and are scored on it. Which
head a variant predicts with, and why AuxFormer's is the present heads' average, is in the
README ("Evaluation").

Scores per condition and head: accuracy, F1, precision and recall (macro and micro), per-class
precision, recall, F1 and support, and the confusion matrix (rows: true class, columns:
predicted).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from common import files
from common.errors import ProjectError
from model.auxformer import AuxFormer
from model.data import ClipDataset, evaluation_loader
from model.variants import ALL_HEADS, CONDITIONS, VARIANTS, head_logits, remove_modalities


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
                   device: torch.device, columns: Sequence[int] | None = None) -> dict[str, dict[str, dict]]:
    """{condition: {head: scores}} for the conditions and heads of ``variant``. ``columns``: the model's
    outputs that ``classes`` are, in that order (all of them by default); the prediction is the
    argmax over these alone (cross-corpus scoring on the classes two corpora share)."""
    columns = list(range(len(classes))) if columns is None else list(columns)
    results = {}
    for condition in VARIANTS[variant].conditions:
        logits, labels, clip_ids = condition_logits(model, data, condition, batch_size, device)
        finite = np.all([np.isfinite(logits[head]).all(axis=1) for head in VARIANTS[variant].scored_heads], axis=0)
        broken = [clip_ids[i] for i in np.flatnonzero(~finite)]
        if broken:
            raise ProjectError(f"the model gives non-finite outputs for {len(broken)} clips (e.g. {broken[0]}) "
                               f"with {condition}: its weights are damaged; retrain it with make train FORCE=1")
        results[condition] = {head: scores(labels, logits[head][:, columns].argmax(axis=1), classes)
                              for head in VARIANTS[variant].scored_heads}
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
    with files.atomic_path(Path(path)) as temporary:  # a half-written plot never replaces the last one
        figure.savefig(temporary, dpi=100, format="png")
