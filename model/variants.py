"""The model variants, in one table, and the one way a modality is removed.

Every variant is the same AuxFormer network (model.auxformer), trained and scored differently:

* ``auxformer``: the loss is the equal-weight sum of the three heads' cross-entropies (main,
  audio, visual), as the reference; it predicts from the average of the heads whose modality
  is present (with both, the reference's average of all three).
* ``mult``: the loss is the main (audio-visual) head's alone, the MulT-style fusion baseline.
* ``audio`` and ``video``: one-modality models. The other modality is always removed, in
  training and in evaluation, and the loss is that of the modality's auxiliary head.

Heads have one name each everywhere: ``main``, ``audio``, ``visual`` (the fields of
model.auxformer.AuxFormerOutputs), and the averages ``average`` (all three, the reference's
test-time prediction) and ``present_average`` (only the heads whose modality is present).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from model.data import Batch

MODEL_HEADS = ("main", "audio", "visual")
ALL_HEADS = (*MODEL_HEADS, "average", "present_average")
# Evaluation conditions: which modalities are kept.
CONDITIONS = {"audio_visual": (True, True), "audio_only": (True, False), "video_only": (False, True)}


@dataclass(frozen=True)
class Variant:
    name: str
    loss_heads: tuple[str, ...]  # heads whose losses are summed in training
    scored_heads: tuple[str, ...]  # heads evaluation reports
    predicting_head: str  # the head predictions (and development scoring) come from
    uses_audio: bool
    uses_video: bool

    @property
    def conditions(self) -> tuple[str, ...]:
        """The evaluation conditions that give this variant input: all three for a fusion model, its own
        modality alone for a one-modality model."""
        return tuple(name for name, kept in CONDITIONS.items()
                     if kept == (self.uses_audio, self.uses_video) or (self.uses_audio and self.uses_video))

    def inputs(self, batch: Batch) -> Batch:
        """The batch this variant sees: a modality it does not use is removed."""
        return remove_modalities(batch, self.uses_audio, self.uses_video)


VARIANTS = {
    "auxformer": Variant("auxformer", MODEL_HEADS, ALL_HEADS, "present_average", True, True),
    "mult": Variant("mult", ("main",), ("main",), "main", True, True),
    "audio": Variant("audio", ("audio",), ("audio",), "audio", True, False),
    "video": Variant("video", ("visual",), ("visual",), "visual", False, True),
}


def remove_modalities(batch: Batch, keep_audio: bool | torch.Tensor, keep_video: bool | torch.Tensor) -> Batch:
    """The batch with removed modalities given as missing: length 0, the way the model takes a missing
    one (its steps are ignored). ``keep_*`` is one flag for the whole batch or a (B,) bool tensor, one
    per clip. Training's modality drop-out, one-modality variants and evaluation's conditions all
    remove a modality through here."""
    def kept(lengths: torch.Tensor, keep: bool | torch.Tensor) -> torch.Tensor:
        return lengths * torch.as_tensor(keep, device=lengths.device)

    return batch._replace(audio_lengths=kept(batch.audio_lengths, keep_audio),
                          video_lengths=kept(batch.video_lengths, keep_video))


def head_logits(main: torch.Tensor, audio: torch.Tensor, visual: torch.Tensor, keep_audio: bool,
                keep_video: bool) -> dict[str, torch.Tensor]:
    """Every head of ALL_HEADS from the model's three outputs, for a condition."""
    present = [main] + [audio] * keep_audio + [visual] * keep_video
    return {"main": main, "audio": audio, "visual": visual, "average": (main + audio + visual) / 3,
            "present_average": torch.stack(present).mean(dim=0)}
