"""Training data: the clips of one manifest split joined with an extraction's feature shards.

Per clip the audio sequence is its audio features (frames x audio dim) and the video sequence its face
embeddings (frames x dim). Frames without a valid face keep the zeros the extraction wrote: the
model sees them as data, as the reference sees its zero-filled frames. A clip without audio, or
without a face on any frame, has that modality missing, given as length 0 (see model.auxformer).

The target is the class index of the clip's label, or its class probabilities under the
``distributional`` rule; accuracy and F1 use the label (the top class when the distributional
rule leaves no unique one). Clips of the split that the extraction lacks are counted in
``ClipDataset.missing`` and left out, so the caller can report them; a split that lacks more than
``MAX_MISSING_SHARE`` of its clips, beyond those the extraction lists as failed, is incomplete
(``is_incomplete``): training refuses it, and so does evaluation unless asked.

Batches are right-padded to their longest sequence. Training batches come from
``BucketBatchSampler`` (clips of similar length together, batches in shuffled order, the same
for the same seed and epoch, optionally within a budget of padded steps); evaluation batches
keep the split's order.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from common.errors import ProjectError
from corpora.manifest import ClipRecord, Manifest
from extract.shards import ClipFeatures, FeatureError, FeatureStore
from model.auxformer import AuxFormerConfig

SOFT_LABEL_RULE = "distributional"
# A split may lack features for this share of its clips (those the extraction could not use,
# listed in its failures files, do not count); beyond it the extraction is taken as incomplete.
MAX_MISSING_SHARE = 0.02
# Clips are sorted by length within pools of this many batches: batches of similar lengths,
# while a clip still meets different neighbours from one epoch to the next.
POOL_BATCHES = 8


class FeatureMismatch(FeatureError):
    """Features that cannot feed the model or the split; the message names the extraction folder."""


def check_features(store: FeatureStore, model_config: AuxFormerConfig) -> None:
    """Raise FeatureMismatch unless the extraction's sizes (from its index) are the model's input sizes."""
    dims = store.dims()
    if (dims.audio_dim, dims.video_dim) != (model_config.audio_dim, model_config.video_dim):
        raise FeatureMismatch(
            f"features in {store.folder} do not match the model: {dims.audio_dim}-d audio and {dims.video_dim}-d "
            f"face embeddings, but the model takes audio_dim {model_config.audio_dim} and video_dim "
            f"{model_config.video_dim}")


class Example(NamedTuple):
    clip_id: str
    audio: torch.Tensor  # (audio steps, audio dim); no steps when the audio is missing
    video: torch.Tensor  # (video steps, dim); no steps when no frame has a face
    target: torch.Tensor  # class index, or class probabilities (n_classes,)
    label: int


class Batch(NamedTuple):
    clip_ids: list[str]
    audio: torch.Tensor  # (B, Ta, audio dim), right-padded with zeros
    audio_lengths: torch.Tensor  # (B,), 0 for a missing modality
    video: torch.Tensor  # (B, Tv, dim)
    video_lengths: torch.Tensor
    targets: torch.Tensor  # (B,) class indices or (B, n_classes) probabilities
    labels: torch.Tensor  # (B,)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.clip_ids, *(tensor.to(device) for tensor in self[1:]))


class ClipDataset(Dataset):
    """The clips of one split that the feature store holds, with their targets."""

    def __init__(self, store: FeatureStore, clips: Sequence[ClipRecord], classes: Sequence[str], soft_targets: bool):
        self.store = store
        self.missing = [clip.clip_id for clip in clips if clip.clip_id not in store]
        self.clips = [clip for clip in clips if clip.clip_id in store]
        self.targets = [_target(clip, classes, soft_targets) for clip in self.clips]
        self.labels = [_label(clip, classes) for clip in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Example:
        clip_id = self.clips[index].clip_id
        audio, video = model_inputs(self.store.load(clip_id))
        return Example(clip_id, audio, video, self.targets[index], self.labels[index])

    def lengths(self) -> list[tuple[int, int]]:
        """(audio steps, video steps) of every clip, from the index alone; 0 for a missing modality."""
        lengths = []
        for clip in self.clips:
            entry = self.store.index[clip.clip_id]
            audio = int(entry["audio_frames"]) if int(entry["has_audio"]) else 0
            video = int(entry["video_frames"]) if int(entry["has_video"]) else 0
            lengths.append((audio, video))
        return lengths


def split_dataset(store: FeatureStore, manifest: Manifest, split: str) -> ClipDataset:
    """The clips of one manifest split that the store holds; FeatureMismatch when it holds none of them."""
    data = ClipDataset(store, manifest.in_split(split), manifest.meta.classes,
                       soft_targets=manifest.meta.label_rule == SOFT_LABEL_RULE)
    if not len(data):
        raise FeatureMismatch(f"none of the {len(data.missing)} {split} clips are in {store.folder}: features of "
                              f"another corpus? run make features DATASET={manifest.meta.dataset}")
    return data


def unlisted_missing(data: ClipDataset, failed: set[str]) -> list[str]:
    """The clips of the split without features that the extraction does not list as failed."""
    return [clip for clip in data.missing if clip not in failed]


def is_incomplete(data: ClipDataset, failed: set[str]) -> bool:
    """Whether more of the split's clips lack features than MAX_MISSING_SHARE allows, the failed ones not counted."""
    return len(unlisted_missing(data, failed)) > MAX_MISSING_SHARE * (len(data) + len(data.missing))


def model_inputs(features: ClipFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip's (audio steps, audio dim) and (video steps, dim) inputs; a missing modality has no steps."""
    audio = features.audio if features.has_audio else features.audio[:0]
    video = features.embedding if features.has_video else features.embedding[:0]
    return torch.from_numpy(np.asarray(audio, np.float32)), torch.from_numpy(np.asarray(video, np.float32))


def _target(clip: ClipRecord, classes: Sequence[str], soft: bool) -> torch.Tensor:
    if soft:
        if len(clip.soft_label) != len(classes):
            raise FeatureMismatch(f"clip {clip.clip_id}: soft label {clip.soft_label} does not have one "
                                  f"probability per class ({len(classes)}); rebuild the manifest")
        return torch.tensor(clip.soft_label, dtype=torch.float32)
    return torch.tensor(_label(clip, classes))


def _label(clip: ClipRecord, classes: Sequence[str]) -> int:
    if clip.label in classes:
        return list(classes).index(clip.label)
    if clip.soft_label:
        return int(np.argmax(clip.soft_label))
    raise FeatureMismatch(f"clip {clip.clip_id} is in split {clip.split!r} without a label; rebuild the manifest")


def pad_sequences(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps_i, dim) tensors -> zero-padded (B, longest, dim) and lengths (B,)."""
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    padded = sequences[0].new_zeros(len(sequences), int(lengths.max()), sequences[0].shape[1])
    for row, sequence in enumerate(sequences):
        padded[row, :len(sequence)] = sequence
    return padded, lengths


def collate(examples: Sequence[Example]) -> Batch:
    audio, audio_lengths = pad_sequences([example.audio for example in examples])
    video, video_lengths = pad_sequences([example.video for example in examples])
    return Batch([example.clip_id for example in examples], audio, audio_lengths, video, video_lengths,
                 torch.stack([example.target for example in examples]),
                 torch.tensor([example.label for example in examples]))


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of clips of similar length in shuffled order; the same batches for the same seed and epoch.

    The clips are shuffled, cut into pools of ``POOL_BATCHES`` batches, each pool is sorted by
    length and cut into batches, and the batches of all pools are shuffled. With ``max_steps``,
    a batch that would pad to more steps than that (its clip count times its longest clip's
    length) is cut, shortest clips first, into batches within it; a clip longer than max_steps
    is a batch alone. Without it the batches depend on the clip count alone. Under distributed
    training, process ``rank`` of ``world_size`` takes every world_size-th batch of that order,
    the order repeated from its start until the count is a multiple of world_size, so that every
    process takes as many steps, even with fewer batches than processes (a process without a
    batch would wait forever for the others' gradients).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 max_steps: int | None = None):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.max_steps = max_steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._own_batches()

    def __len__(self) -> int:
        # With a budget the count depends on the epoch's order, so it is counted, not computed.
        return len(self._own_batches())

    def _own_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths)).tolist()
        pool_size = self.batch_size * POOL_BATCHES
        batches = []
        for start in range(0, len(order), pool_size):
            pool = sorted(order[start:start + pool_size], key=lambda index: self.lengths[index])
            for first in range(0, len(pool), self.batch_size):
                batches += self._within_budget(pool[first:first + self.batch_size])
        batches = [batches[index] for index in rng.permutation(len(batches))]
        per_process = -(-len(batches) // self.world_size)
        batches = [batches[step % len(batches)] for step in range(per_process * self.world_size)]
        return batches[self.rank::self.world_size]

    def _within_budget(self, batch: list[int]) -> list[list[int]]:
        """A batch sorted by length, cut where the next clip would take it over max_steps padded steps."""
        if self.max_steps is None:
            return [batch]
        parts, part = [], []
        for index in batch:
            if part and (len(part) + 1) * self.lengths[index] > self.max_steps:
                parts.append(part)
                part = []
            part.append(index)
        return parts + [part]


class ClipLoader(DataLoader):
    """A DataLoader whose workers' ProjectError arrives as one line, as the worker raised it: torch
    raises it again in this process with the worker's traceback in its message."""

    def __iter__(self):
        try:
            yield from super().__iter__()
        except ProjectError as error:
            if "Original Traceback" not in str(error):
                raise
            raise type(error)(str(error).strip().splitlines()[-1].split(": ", 1)[-1]) from None


def training_loader(dataset: ClipDataset, batch_size: int, seed: int, num_workers: int, rank: int = 0,
                    world_size: int = 1, max_steps: int | None = None) -> DataLoader:
    """Bucketed batches (this process's share), within ``max_steps`` padded steps when given; call
    ``loader.batch_sampler.set_epoch(epoch)`` before each epoch."""
    total_steps = [audio + video for audio, video in dataset.lengths()]
    sampler = BucketBatchSampler(total_steps, batch_size, seed, rank, world_size, max_steps)
    return ClipLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)


def evaluation_loader(dataset: ClipDataset, batch_size: int, num_workers: int) -> DataLoader:
    return ClipLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
