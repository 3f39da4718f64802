"""How well simple per-clip statistics separate the demo corpus's emotions, per modality.

A check of the corpus design (corpora.demo.design) on the files themselves, before any real
model: speaker-independent cross-validation (folds by actor) of a logistic regression on
- voice: log-mel band means and spreads, pitch level and range (YIN), loudness, over speech frames;
- face: gradient histograms (HOG) of the detected face (mediapipe), cropped, grey, 64x64,
  averaged over the middle half of the clip (the expression's apex), and their spread over time;
- both: the two feature sets side by side.
The design intends each modality alone to confuse some pairs of emotions and both together to
separate all six, so "both" should beat either modality by a clear margin.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import librosa
import numpy as np
import soundfile
from tqdm import tqdm

from common.processes import process_pool
from corpora import crema_d
from corpora.crema_d import ClipName
from corpora.manifest import CorpusError

FACE_PIXELS = 64
# Gradient histograms see brow slant, eye opening and mouth curve whatever the skin tone.
HOG = cv2.HOGDescriptor((FACE_PIXELS, FACE_PIXELS), (16, 16), (8, 8), (8, 8), 9)
FRAME_STEP = 3  # every third frame is plenty for clip-level statistics
N_MELS = 40
CONDITIONS = ("voice", "face", "both")


@dataclass(frozen=True)
class ClipFeatures:
    clip_id: str
    voice: np.ndarray
    face: np.ndarray
    face_frames_found: float  # share of sampled frames with a detected face


def voice_features(wav_path: Path) -> np.ndarray:
    samples, sr = soundfile.read(wav_path, dtype="float32")
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=samples, sr=sr, n_fft=400, hop_length=160,
                                                             n_mels=N_MELS))
    energy_db = librosa.amplitude_to_db(librosa.feature.rms(y=samples, frame_length=400, hop_length=160)[0])
    speech = energy_db > energy_db.max() - 30
    f0, voiced = pitch_track(samples, sr)
    log_f0 = np.log2(f0[voiced])
    mel_speech = mel[:, speech]
    return np.concatenate([
        mel_speech.mean(axis=1), mel_speech.std(axis=1),
        [np.median(log_f0), np.subtract(*np.percentile(log_f0, [90, 10])), energy_db[speech].mean(),
         speech.mean()],
    ])


def pitch_track(samples: np.ndarray, sr: int, hop: int = 160, frame: int = 640,
                fmin: float = 60.0, fmax: float = 600.0) -> tuple[np.ndarray, np.ndarray]:
    """Pitch per 10 ms by normalised autocorrelation; returns (f0 in Hz, voiced mask).

    Written out here because librosa.yin crashes (segfault in its numba kernel) with the pinned
    numba 0.68.1 / numpy 2.4.
    """
    frames = librosa.util.frame(np.pad(samples, frame // 2), frame_length=frame, hop_length=hop).T
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(frame)
    spectrum = np.fft.rfft(frames, n=2 * frame)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[:, :frame]
    autocorrelation /= autocorrelation[:, :1] + 1e-9
    low, high = int(sr / fmax), int(sr / fmin)
    lags = low + np.argmax(autocorrelation[:, low:high], axis=1)
    strength = autocorrelation[np.arange(len(lags)), lags]
    return sr / lags, strength > 0.5


def face_features(flv_path: Path, detector) -> tuple[np.ndarray, float]:
    capture = cv2.VideoCapture(str(flv_path))
    crops, sampled, index = [], 0, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % FRAME_STEP == 0:
            sampled += 1
            boxes = detector.detect(frame)
            if boxes:
                crops.append(_face_crop(frame, max(boxes, key=lambda b: b.score)))
        index += 1
    capture.release()
    if not crops:
        return np.zeros(2 * HOG.getDescriptorSize()), 0.0
    stack = np.stack(crops)
    middle = stack[len(stack) // 4: max(3 * len(stack) // 4, len(stack) // 4 + 1)]
    return np.concatenate([middle.mean(axis=0).ravel(), stack.std(axis=0).ravel()]), len(crops) / sampled


def _face_crop(frame: np.ndarray, box) -> np.ndarray:
    size = 1.2 * max(box.width, box.height)
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    x0, y0 = int(max(cx - size / 2, 0)), int(max(cy - size / 2, 0))
    grey = cv2.cvtColor(frame[y0:int(y0 + size), x0:int(x0 + size)], cv2.COLOR_BGR2GRAY)
    crop = cv2.resize(grey, (FACE_PIXELS, FACE_PIXELS), interpolation=cv2.INTER_AREA)
    return HOG.compute(crop).ravel()


_worker: dict = {}


def _init_worker(make_detector: Callable) -> None:
    cv2.setNumThreads(1)
    _worker["detector"] = make_detector()


def _clip_features(args: tuple[str, Path]) -> ClipFeatures:
    clip_id, corpus_dir = args
    face, found = face_features(corpus_dir / crema_d.VIDEO_DIR / f"{clip_id}.flv", _worker["detector"])
    return ClipFeatures(clip_id, voice_features(corpus_dir / crema_d.AUDIO_DIR / f"{clip_id}.wav"), face, found)


def extract_all(corpus_dir: Path, workers: int, make_detector: Callable) -> list[ClipFeatures]:
    """Per-clip features of every clip; ``make_detector`` builds a face detector in each worker (the
    corpus layer has none of its own: the caller brings extract's)."""
    clip_ids = sorted(p.stem for p in (corpus_dir / crema_d.AUDIO_DIR).glob("*.wav"))
    if not clip_ids:
        raise CorpusError(f"no clips in {corpus_dir / crema_d.AUDIO_DIR}: run `make demo-data` first")
    with process_pool(workers, _init_worker, (make_detector,)) as pool:
        jobs = pool.map(_clip_features, [(c, corpus_dir) for c in clip_ids], chunksize=8)
        return list(tqdm(jobs, total=len(clip_ids), unit="clip", desc="clip statistics"))


def cross_validate(features: list[ClipFeatures], folds: int = 5, seed: int = 0) -> dict:
    """Accuracy, macro-F1 and confusion matrix per condition, folds split by actor."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names = [ClipName.parse(f.clip_id) for f in features]
    labels = np.array([n.emotion for n in names])
    actors = np.array([n.actor for n in names])
    voice = np.stack([f.voice for f in features])
    face = np.stack([f.face for f in features])
    classes = sorted(crema_d.EMOTIONS)
    results = {}
    for condition in CONDITIONS:
        predicted = np.empty_like(labels)
        for train, test in GroupKFold(n_splits=min(folds, len(set(actors)))).split(voice, labels, actors):
            parts = []
            if condition in ("voice", "both"):
                parts.append(StandardScaler().fit(voice[train]).transform(voice))
            if condition in ("face", "both"):
                reduce = make_pipeline(StandardScaler(), PCA(n_components=40, random_state=seed)).fit(face[train])
                parts.append(StandardScaler().fit(reduce.transform(face[train])).transform(reduce.transform(face)))
            x = np.hstack(parts)
            model = LogisticRegression(C=0.1, max_iter=3000).fit(x[train], labels[train])
            predicted[test] = model.predict(x[test])
        results[condition] = {
            "accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, average="macro")),
            "classes": classes,
            "confusion": confusion_matrix(labels, predicted, labels=classes).tolist(),
        }
    return results


def write_report(results: dict, features: list[ClipFeatures], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"clips": len(features),
               "face_found_share": float(np.mean([f.face_frames_found for f in features])),
               "conditions": results}
    (out_dir / "separability.json").write_text(json.dumps(summary, indent=2))
    figure, axes = plt.subplots(1, len(CONDITIONS), figsize=(5 * len(CONDITIONS), 4.4))
    for ax, condition in zip(axes, CONDITIONS):
        result = results[condition]
        matrix = np.array(result["confusion"], dtype=float)
        ax.imshow(matrix / matrix.sum(axis=1, keepdims=True), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(result["classes"])), result["classes"])
        ax.set_yticks(range(len(result["classes"])), result["classes"])
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, int(count), ha="center", va="center", fontsize=8)
        ax.set_title(f"{condition}: macro-F1 {result['macro_f1']:.2f}")
        ax.set_xlabel("predicted")
        ax.set_ylabel("intended")
    figure.tight_layout()
    figure.savefig(out_dir / "confusion.png", dpi=100)
    plt.close(figure)


def format_table(results: dict) -> str:
    lines = [f"{'condition':<10} {'accuracy':>9} {'macro-F1':>9}"]
    lines += [f"{c:<10} {results[c]['accuracy']:>9.3f} {results[c]['macro_f1']:>9.3f}" for c in CONDITIONS]
    return "\n".join(lines)
