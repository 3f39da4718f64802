"""``wav2vec2``: a wav2vec2, HuBERT or WavLM checkpoint in the Hugging Face format, loaded with
``transformers`` from a local folder or the user's Hugging Face cache (never downloaded: the
loader runs with ``local_files_only``), cut after transformer layer ``audio_layer``.

What the reference does, and how it is reproduced (ilucasgoncalves/AuxFormer): ``net/modelWrapper.py``
loads ``facebook/wav2vec2-large-robust``, deletes its encoder layers from index 12 on and feeds
the model's ``last_hidden_state`` (1,024 numbers at 50 frames a second) to AuxFormer, passing an
attention mask (``utils/dataset.py``, ``collate_fn_padd``). Here too the encoder's layer list is
cut to its first ``layer`` layers and ``last_hidden_state`` is taken: for the "stable layer norm"
models (large-robust among them) that is layer ``layer``'s output through the encoder's final
layer norm, exactly the reference's features; for the others it is layer ``layer``'s output.
The reference standardises the raw waveform by one mean and deviation over all training samples
(``utils/normalizer.py``, ``get_norm_stat_for_wav``); ``--audio-norm fixed`` with those two numbers
does the same, ``utterance`` (the default) standardises each clip by its own, as the Hugging Face
feature extractor of these checkpoints does (``do_normalize``), and ``none`` leaves the samples.

Batch invariance: clips are zero-padded to the longest in their batch and, for models whose
convolutional front end normalises each frame (``feat_extract_norm == "layer"``), given an
attention mask, so a clip's features do not depend on its neighbours (within float rounding,
tests/extract/test_audio_encoders.py states it). Models whose front end normalises over time
(``"group"``, e.g. wav2vec2-base) would see the padding, so they get only clips of one length per
batch.

Long clips: a clip longer than ``chunk_seconds`` is encoded in chunks of that many seconds, each
run with ``context_seconds`` more audio on both sides, and of each chunk's output only the
frames of its own part are kept; the joined frames are exactly those the whole clip has (same
count, same times). Attention reaches the whole input, so their values differ from the unchunked
ones by what the context misses (the test states the tolerance on a small model).

Precision: ``float32`` (with TF32 off on CUDA, so GPU features are the CPU's), or ``float16`` /
``bfloat16`` under autocast, meant for the GPU.
"""
from __future__ import annotations

import hashlib
import math
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from common.config import option
from extract.audio import SAMPLE_RATE
from extract.audio_encoders.base import AUDIO_ENCODERS, AudioEncoder, AudioEncoderError
from extract.face_encoders.base import full_float32
from extract.model_files import EncoderFile, sha256_of

AUDIO_NORMS = ("utterance", "fixed", "none")
PRECISIONS = ("float32", "float16", "bfloat16")
# wav2vec2-family model types transformers' AutoModel builds with the same front end and output.
WAV2VEC2_FAMILY = ("wav2vec2", "hubert", "wavlm")
REFERENCE_CHECKPOINT = "facebook/wav2vec2-large-robust"
# Padded samples per wav2vec2 batch: about a minute of audio, a few GB for a large model.
BATCH_SAMPLES = 60 * SAMPLE_RATE
NORM_EPSILON = 1e-6  # the reference adds 1e-6 to the deviation it divides by
# Chunks of at most an hour's audio: attention over a chunk grows with the square of its length.
MAX_CHUNK_SECONDS = 3600.0


@dataclass(frozen=True)
class Wav2Vec2Options:
    audio_weights: str = option("", "wav2vec2: a Hugging Face checkpoint folder, or a model name in the Hugging "
                                    "Face cache (never downloaded), e.g. facebook/wav2vec2-large-robust")
    audio_layer: int = option(12, "wav2vec2: take the output of this transformer layer (the reference's 12)")
    audio_norm: str = option("utterance", f"wav2vec2 input standardisation: {', '.join(AUDIO_NORMS)} (fixed: by "
                                          "--audio-norm-mean and --audio-norm-std, as the reference does with its "
                                          "training set's)")
    audio_norm_mean: float = option(0.0, "wav2vec2 with --audio-norm fixed: the samples' mean")
    audio_norm_std: float = option(1.0, "wav2vec2 with --audio-norm fixed: the samples' standard deviation")
    audio_precision: str = option("float32", f"wav2vec2 arithmetic: {', '.join(PRECISIONS)} (the half precisions "
                                             "are meant for the GPU)")
    audio_chunk_seconds: float = option(30.0, "wav2vec2: encode longer clips in chunks of this many seconds")
    audio_context_seconds: float = option(2.0, "wav2vec2: audio added on each side of a chunk, seconds")

    def __post_init__(self) -> None:
        if self.audio_norm not in AUDIO_NORMS or self.audio_precision not in PRECISIONS:
            raise AudioEncoderError(f"--audio-norm must be one of {', '.join(AUDIO_NORMS)} and --audio-precision "
                                    f"one of {', '.join(PRECISIONS)}")
        finite = all(math.isfinite(value) for value in (self.audio_norm_mean, self.audio_norm_std,
                                                         self.audio_chunk_seconds, self.audio_context_seconds))
        if (not finite or self.audio_layer < 1 or self.audio_norm_std <= 0
                or not 0 < self.audio_chunk_seconds <= MAX_CHUNK_SECONDS
                or not 0 <= self.audio_context_seconds <= MAX_CHUNK_SECONDS):
            raise AudioEncoderError(f"--audio-layer must be at least 1, --audio-norm-std positive, "
                                    f"--audio-chunk-seconds and --audio-context-seconds within 0..{MAX_CHUNK_SECONDS:g}"
                                    " (a chunk positive), all finite")


@AUDIO_ENCODERS.register
class Wav2Vec2Encoder(AudioEncoder):
    name = "wav2vec2"
    Options = Wav2Vec2Options
    machine_paths = ("audio_weights",)

    def __init__(self, options: Wav2Vec2Options, device: str = "cpu", expected_sha256: str = ""):
        self.options = options
        self.device = torch.device(device)
        folder = wav2vec2_folder(options.audio_weights)
        self.model, model_config, self.weights_sha256 = load_wav2vec2(folder, options.audio_layer, expected_sha256)
        self.model.to(self.device)
        self.dim = model_config.hidden_size
        self.stride = math.prod(model_config.conv_stride)
        self.rate = SAMPLE_RATE / self.stride
        # The samples the first output frame needs: each convolution widens the field by
        # (kernel - 1) steps of the strides before it.
        self.min_samples = 1 + sum((kernel - 1) * math.prod(model_config.conv_stride[:index])
                                   for index, kernel in enumerate(model_config.conv_kernel))
        self.masked = model_config.feat_extract_norm == "layer"
        self.identity = (f"transformers {metadata.version('transformers')} {model_config.model_type} "
                         f"{model_config.num_hidden_layers} layers, cut after layer {options.audio_layer}")

    def in_workers(self, device: str) -> bool:
        # On the CPU the workers' cores are the only ones: a clip's features are its neighbours' in a
        # task instead of in a main-process batch, the same within float rounding (the class docstring).
        return torch.device(device).type == "cpu"

    @classmethod
    def folder_part(cls, options: Wav2Vec2Options) -> str:
        return f"wav2vec2L{options.audio_layer}"

    @classmethod
    def weights_files(cls, checkpoint: str = REFERENCE_CHECKPOINT) -> list[EncoderFile]:
        try:
            folder = wav2vec2_folder(checkpoint)
        except AudioEncoderError:
            return [EncoderFile(cls.name, "audio", f"{checkpoint} in the Hugging Face cache", "", False,
                                f"on a machine with internet: hf download {checkpoint}, then copy the Hugging "
                                "Face cache here, or pass --audio-weights FOLDER (a save_pretrained folder)")]
        return [EncoderFile(cls.name, "audio", str(folder), weights_digest(folder), True,
                            f"--audio-weights {checkpoint} (layer 12 is the reference's)")]

    def frames(self, samples: int) -> int:
        """Output frames for a clip of ``samples`` samples (no padding in the front end)."""
        if samples < self.min_samples:
            return 0
        return (samples - self.min_samples) // self.stride + 1

    def __call__(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        segments = []  # (clip index, first frame it gives, the slice of its output to keep, samples)
        for index, clip in enumerate(clips):
            samples = self._normalised(np.asarray(clip, np.float32))
            segments += [(index, *part) for part in self._chunks(samples)]
        outputs = [[] for _ in clips]
        for batch in self._batches(segments):
            encoded = self._encode([segment[3] for segment in batch])
            for (index, keep_from, keep, _), frames in zip(batch, encoded):
                outputs[index].append((keep_from, frames[keep]))
        return [np.concatenate([frames for _, frames in sorted(parts, key=lambda part: part[0])])
                if parts else np.zeros((0, self.dim), np.float32) for parts in outputs]

    def _normalised(self, samples: np.ndarray) -> np.ndarray:
        if self.options.audio_norm == "utterance":
            return (samples - samples.mean()) / (samples.std() + NORM_EPSILON)
        if self.options.audio_norm == "fixed":
            return (samples - self.options.audio_norm_mean) / (self.options.audio_norm_std + NORM_EPSILON)
        return samples

    def _chunks(self, samples: np.ndarray) -> list[tuple[int, slice, np.ndarray]]:
        """(first frame it gives, the slice of its output to keep, its samples) for each chunk of a clip."""
        total = self.frames(len(samples))
        core = max(1, int(self.options.audio_chunk_seconds * self.rate))
        if total <= core:
            return [(0, slice(0, total), samples)]
        context = int(self.options.audio_context_seconds * self.rate)
        chunks = []
        for start in range(0, total, core):
            stop = min(start + core, total)
            first, last = max(0, start - context), min(total, stop + context)
            # Frames first..last-1 of the clip are frames 0..last-first-1 of these samples.
            piece = samples[first * self.stride:(last - 1) * self.stride + self.min_samples]
            chunks.append((start, slice(start - first, stop - first), piece))
        return chunks

    def _batches(self, segments: list) -> list[list]:
        """Segments in batches of similar length, within BATCH_SAMPLES padded samples; one length per
        batch for models that would see the padding."""
        ordered = sorted(segments, key=lambda segment: len(segment[3]))
        batches, batch = [], []
        for segment in ordered:
            longest = len(segment[3])
            if batch and ((len(batch) + 1) * longest > BATCH_SAMPLES
                          or (not self.masked and len(batch[0][3]) != longest)):
                batches.append(batch)
                batch = []
            batch.append(segment)
        return batches + [batch] if batch else batches

    @torch.inference_mode()
    def _encode(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        lengths = [len(piece) for piece in pieces]
        padded = torch.zeros(len(pieces), max(lengths))
        mask = torch.zeros(len(pieces), max(lengths), dtype=torch.long)
        for row, piece in enumerate(pieces):
            padded[row, :len(piece)] = torch.from_numpy(piece)
            mask[row, :len(piece)] = 1
        inputs = {"input_values": padded.to(self.device)}
        if self.masked:
            inputs["attention_mask"] = mask.to(self.device)
        with self._precision():
            hidden = self.model(**inputs).last_hidden_state
        hidden = hidden.float().cpu().numpy()
        return [hidden[row, :self.frames(length)] for row, length in enumerate(lengths)]

    def _precision(self):
        if self.options.audio_precision == "float32":
            return full_float32() if self.device.type == "cuda" else nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.options.audio_precision))


def wav2vec2_folder(weights: str) -> Path:
    """The local folder of a checkpoint given as a folder or as a name in the Hugging Face cache;
    AudioEncoderError, one line with the fix, when it is neither."""
    if not weights:
        raise AudioEncoderError(f"--audio-encoder wav2vec2 needs --audio-weights: a folder in the Hugging Face "
                                f"format or a model name in the Hugging Face cache (the reference's: "
                                f"{REFERENCE_CHECKPOINT}, README \"Encoders\")")
    path = Path(weights)
    if path.is_dir():
        return path
    if path.exists() or weights.count("/") != 1:
        raise AudioEncoderError(f"--audio-weights {weights}: not a folder holding a Hugging Face checkpoint, nor a "
                                f"model name such as {REFERENCE_CHECKPOINT}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(weights, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise AudioEncoderError(
            f"--audio-weights {weights}: not in the Hugging Face cache and never downloaded here; on a machine "
            f"with internet run `hf download {weights}` and copy its cache folder (~/.cache/huggingface)"
            ", or save the model with save_pretrained into a folder and pass that folder") from None


def load_wav2vec2(folder: Path, layer: int, expected_sha256: str = ""):
    """The model in ``folder`` cut after transformer layer ``layer``, in eval mode, its config and its
    weights' digest; with ``expected_sha256``, weights of another digest are refused unopened."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    try:
        model_config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise AudioEncoderError(f"{folder}: no readable Hugging Face config.json ({str(error).splitlines()[0]}); "
                                "give the folder save_pretrained wrote") from None
    if model_config.model_type not in WAV2VEC2_FAMILY:
        raise AudioEncoderError(f"{folder}: a {model_config.model_type!r} model; --audio-encoder wav2vec2 takes "
                                f"{', '.join(WAV2VEC2_FAMILY)} checkpoints")
    if not 1 <= layer <= model_config.num_hidden_layers:
        raise AudioEncoderError(f"--audio-layer {layer}: {folder} has transformer layers 1 to "
                                f"{model_config.num_hidden_layers}")
    digest = weights_digest(folder)
    if expected_sha256 and digest != expected_sha256:
        raise AudioEncoderError(f"{folder}: its weights have sha256 {digest}, but the features were made with "
                                f"{expected_sha256}: put that checkpoint back, or extract and train again with it")
    try:
        model, loading = AutoModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:  # the last: a truncated model.safetensors
        raise AudioEncoderError(f"{folder}: the weights do not load ({str(error).splitlines()[0]}); fetch the "
                                "checkpoint again") from None
    del model.encoder.layers[layer:]
    # transformers fills weights missing from the file with random ones and only warns; the
    # features of such a model would be noise. The mask embedding is used only in pre-training.
    used = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    missing = sorted(name for name in loading["missing_keys"] if name in used and name != "masked_spec_embed")
    if missing:
        raise AudioEncoderError(f"{folder}: the weights file lacks {len(missing)} of the model's tensors (e.g. "
                                f"{missing[0]}); fetch the checkpoint again, whole")
    return model.eval(), model_config, digest


def weights_digest(folder: Path) -> str:
    """sha256 of the checkpoint's weights: the file's own, or of the per-file hashes when it is split."""
    weight_files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin"})
    if not weight_files:
        raise AudioEncoderError(f"{folder}: no weights file (model.safetensors or pytorch_model.bin)")
    hashes = [sha256_of(path) for path in weight_files]
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("".join(f"{p.name} {h}\n" for p, h in zip(weight_files, hashes)).encode()).hexdigest()
