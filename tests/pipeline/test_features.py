"""The feature extraction stage on real demo clips: shards that verify, resume after kill -9,
bad input that costs only the broken modality, and sharded runs equal to one run."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import yaml

from common.config import from_values
from corpora.demo.generate import DemoConfig, generate
from extract import engine
from extract.clip_media import process_clip
from extract.engine import FeaturesConfig, extract
from extract.face_track import Video
from extract.shards import FeatureError, FeatureStore, clip_ids_in, shard_files
from extract.spec import ExtractionRecord, ExtractionSpec, Extractor
from extract.tiny_wav2vec2 import saved_wav2vec2
from extract.verify import verify
from pipeline import features

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("face_model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three actors (the fewest a speaker-independent partition takes), one sentence: 48 clips."""
    out = tmp_path_factory.mktemp("corpus") / "demo"
    generate(DemoConfig(out_dir=out, actors=3, sentences=1, seed=3, workers=2))
    return out


def config_for(corpus: Path, out_root: Path, **changes) -> FeaturesConfig:
    return FeaturesConfig(dataset="demo", corpus_dir=str(corpus), out_root=out_root, workers=2, clips_per_shard=8,
                          device="cpu", **changes)


@pytest.fixture(scope="module")
def single_run(corpus, tmp_path_factory):
    out_root = tmp_path_factory.mktemp("features")
    folder, report = extract(config_for(corpus, out_root))
    return folder, report


def same_features(folder_a: Path, folder_b: Path) -> None:
    a, b = FeatureStore(folder_a), FeatureStore(folder_b)
    assert sorted(a.clip_ids()) == sorted(b.clip_ids())
    for clip_id in a.clip_ids():
        x, y = a.load(clip_id), b.load(clip_id)
        np.testing.assert_allclose(x.audio, y.audio, atol=1e-4)
        np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-4)
        assert np.array_equal(x.valid, y.valid) and np.allclose(x.boxes, y.boxes, equal_nan=True)
    a.close()
    b.close()


def frames_in(video: Path) -> int:
    with Video(video) as decoded:
        return sum(1 for _ in decoded.frames())


def test_demo_features_verify_with_faces_and_consistent_lengths(corpus, single_run):
    folder, report = single_run
    assert report.clips == 48 and not report.failures
    assert report.face_frames / report.steps >= 0.95
    assert 0 < report.worker_peak_mb and f"largest worker {report.worker_peak_mb:.0f} MB" in report.summary()
    # Every frame decoded, every eighth (3.75 a second of the 30 fps video: round(30 / 4)) followed and embedded.
    frames = [frames_in(path) for path in sorted((corpus / "VideoFlash").glob("*.flv"))]
    assert report.frames == sum(frames) and report.steps == sum(-(-n // 8) for n in frames)
    assert verify(folder) == []
    store = FeatureStore(folder)
    clip = store.load("1001_IEO_ANG_HI")
    assert clip.audio.shape[1] == 80 and clip.embedding.shape == (len(clip.valid), 135)
    assert abs((len(clip.audio) - 1) / 100 - clip.duration) < 0.05  # 10 ms log-mel hop
    assert clip.fps == 3.75 and 0 < clip.duration - (len(clip.valid) - 1) / 3.75 <= 8 / 30 + 1e-6  # every 8th
    np.testing.assert_allclose(clip.timestamps, np.arange(len(clip.valid)) / 3.75, atol=1e-3)
    assert (folder / "extraction.yaml").read_text().count("sha256") >= 2
    assert store.dims().audio_rate == 100.0


def test_rerun_skips_everything(corpus, single_run):
    folder, _ = single_run
    before = sorted(p.name for p in shard_files(folder))
    _, report = extract(config_for(corpus, folder.parents[1]))
    assert report.clips == 0 and report.skipped == 48
    assert sorted(p.name for p in shard_files(folder)) == before


def test_two_shards_give_the_same_features_as_one_run(corpus, single_run, tmp_path):
    for index in (0, 1):
        folder, report = extract(config_for(corpus, tmp_path, num_shards=2, shard_index=index))
        assert report.clips == 24
    assert verify(folder) == []
    same_features(single_run[0], folder)


def test_shard_comes_from_torchrun_or_slurm_variables():
    assert engine.resolve_shard(FeaturesConfig(), {"RANK": "1", "WORLD_SIZE": "4"}) == (4, 1)
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}
    assert engine.resolve_shard(FeaturesConfig(), slurm) == (3, 2)
    assert engine.resolve_shard(FeaturesConfig(), {}) == (1, 0)
    with pytest.raises(FeatureError, match="outside"):
        engine.resolve_shard(FeaturesConfig(num_shards=2, shard_index=2), {})


def test_workers_share_the_cores_among_a_machines_torchrun_processes():
    cores = os.cpu_count() or 1
    assert engine.worker_count(FeaturesConfig(), {}) == cores
    assert engine.worker_count(FeaturesConfig(), {"LOCAL_WORLD_SIZE": "2"}) == max(1, cores // 2)
    assert engine.worker_count(FeaturesConfig(), {"LOCAL_WORLD_SIZE": str(4 * cores)}) == 1
    assert engine.worker_count(FeaturesConfig(workers=3), {"LOCAL_WORLD_SIZE": "2"}) == 3


def test_killed_run_leaves_only_whole_shards_and_the_rerun_completes(corpus, single_run, tmp_path):
    command = [sys.executable, "-m", "pipeline.features", "--dataset", "demo", "--corpus-dir", str(corpus),
               "--out-root", str(tmp_path), "--workers", "1",
               "--clips-per-shard", "4", "--device", "cpu"]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    folder = None
    while time.monotonic() < deadline:
        found = list(tmp_path.glob("demo/*/*.h5"))
        if len(found) >= 2:
            folder = found[0].parent
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert folder is not None, "the run wrote no shard in time"
    finished = len(shard_files(folder))
    assert 2 <= finished < 12
    assert all(len(clip_ids_in(path)) == 4 for path in shard_files(folder))  # every visible shard is whole

    _, report = extract(config_for(corpus, tmp_path))
    assert report.skipped == 4 * finished and report.clips == 48 - 4 * finished
    assert verify(folder) == []
    same_features(single_run[0], folder)


def broken_copy(corpus: Path, destination: Path) -> Path:
    """The corpus with one kind of bad input per clip (the other clips stay sound)."""
    shutil.copytree(corpus, destination)
    video, audio = destination / "VideoFlash", destination / "AudioWAV"
    (video / "1001_IEO_ANG_HI.flv").write_bytes(os.urandom(5000))  # corrupt video, sound WAV
    (video / "1001_IEO_ANG_MD.flv").write_bytes(b"")  # empty video ...
    (audio / "1001_IEO_ANG_MD.wav").write_bytes(b"RIFF")  # ... and a broken WAV: nothing usable
    flv = video / "1001_IEO_SAD_HI.flv"
    flv.write_bytes(flv.read_bytes()[: flv.stat().st_size // 3])  # truncated video
    _remux_without_audio(video / "1002_IEO_HAP_HI.flv")
    (audio / "1002_IEO_HAP_HI.wav").unlink()  # video only: no WAV, no audio track
    _blank_video(video / "1002_IEO_FEA_HI.flv")  # no face anywhere
    samples, rate = soundfile.read(audio / "1003_IEO_NEU_XX.wav")
    resampled = np.interp(np.arange(0, len(samples), rate / 44100), np.arange(len(samples)), samples)
    soundfile.write(audio / "1003_IEO_NEU_XX.wav", resampled, 44100)  # another sample rate
    soundfile.write(audio / "1003_IEO_DIS_HI.wav", np.zeros(100), 16000)  # shorter than one window
    return destination


def _remux_without_audio(path: Path) -> None:
    copy = path.with_suffix(".tmp.flv")
    with av.open(str(path)) as source, av.open(str(copy), "w", format="flv") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    copy.replace(path)


def _blank_video(path: Path) -> None:
    from corpora.demo.media import write_flv

    grey = np.full((540, 480), 128, np.uint8)  # an I420 frame
    write_flv(path, [grey] * 45, np.zeros(24000, np.float32))


def test_bad_input_costs_only_what_is_broken(corpus, tmp_path, capsys):
    broken = broken_copy(corpus, tmp_path / "broken")
    argv = ["--dataset", "demo", "--corpus-dir", str(broken), "--out-root", str(tmp_path / "out"),
            "--workers", "2", "--device", "cpu"]
    assert features.main(argv) == 0
    out = capsys.readouterr()
    assert "1 failed" in out.out and "1001_IEO_ANG_MD" in out.err
    (folder,) = (tmp_path / "out" / "demo").iterdir()
    store = FeatureStore(folder)
    assert "1001_IEO_ANG_MD" not in store and "1001_IEO_ANG_MD" in (folder / "failures-part0of1.csv").read_text()
    corrupt = store.load("1001_IEO_ANG_HI")
    assert corrupt.has_audio and not corrupt.has_video and corrupt.video_note
    truncated = store.load("1001_IEO_SAD_HI")
    assert truncated.has_video and "truncated" in truncated.video_note
    silent = store.load("1002_IEO_HAP_HI")
    assert silent.has_video and not silent.has_audio and "no audio track" in silent.audio_note
    faceless = store.load("1002_IEO_FEA_HI")
    assert faceless.has_audio and not faceless.has_video and faceless.video_note == "no face found"
    resampled = store.load("1003_IEO_NEU_XX")
    assert resampled.has_audio and abs((len(resampled.audio) - 1) / 100 - resampled.duration) < 0.05
    # An unusable WAV: the video's own sound track is used instead, and the note says why.
    short = store.load("1003_IEO_DIS_HI")
    assert short.has_audio and short.has_video
    assert "shorter than one analysis window" in short.audio_note and "video's own audio track" in short.audio_note
    store.close()
    assert verify(folder) == []
    # Under --strict, the warnings count: the failed clip, and the two whose video is shorter than
    # their WAV (the truncated one, and the faceless one rewritten with 1.5 s of frames).
    strict_problems = verify(folder, strict=True)
    assert sorted(p.split(":")[0] for p in strict_problems) == ["1001_IEO_ANG_MD", "1001_IEO_SAD_HI", "1002_IEO_FEA_HI"]
    assert [p for p in strict_problems if p.startswith("1001_IEO_ANG_MD")][0].startswith("1001_IEO_ANG_MD: failed")
    assert features.main([*argv, "--strict"]) == 1


def test_extraction_yaml_and_folder_name_record_the_face_rate(single_run):
    folder, _ = single_run
    record = yaml.safe_load((folder / "extraction.yaml").read_text())
    assert record["spec"]["face_rate"] == 4.0 and record["spec"]["detect_every"] == 4
    assert folder.name.startswith("fer-mediapipe-cascade-r4-k4-mel80-")


def test_records_from_before_the_face_rate_mean_every_frame(single_run, tmp_path):
    folder, _ = single_run
    record = yaml.safe_load((folder / "extraction.yaml").read_text())
    del record["spec"]["face_rate"], record["folder"]  # neither was recorded then
    (tmp_path / "extraction.yaml").write_text(yaml.safe_dump(record))
    assert ExtractionRecord.load(tmp_path).spec.face_rate == 0.0
    # The name such a record's folder has: no -r part (detection then ran on every 3rd frame).
    assert ExtractionSpec(face_rate=0, detect_every=3).folder_name().startswith("fer-mediapipe-cascade-k3-mel80-")


def test_the_main_process_embeds_as_the_workers_do(corpus, single_run, tmp_path):
    folder, report = extract(config_for(corpus, tmp_path, embed_in="main"))
    assert report.clips == 48 and folder.name == single_run[0].name
    same_features(single_run[0], folder)


def test_workers_that_embed_start_from_a_parent_that_ran_torch_threads(corpus, tmp_path):
    """A forked child whose parent has run torch's thread pool hangs in its first multi-threaded
    operation unless it first goes down to one thread (extract.engine._init_worker)."""
    code = ("import sys, torch; from pathlib import Path; from extract.engine import FeaturesConfig, extract\n"
            "torch.set_num_threads(2); x = torch.randn(1500, 1500); (x @ x).sum()\n"
            "torch.nn.functional.conv2d(torch.randn(64, 8, 64, 64), torch.randn(8, 8, 3, 3)).sum()\n"
            f"config = FeaturesConfig(dataset='demo', corpus_dir={str(corpus)!r}, out_root=Path({str(tmp_path)!r}), "
            "workers=2, device='cpu', embed_in='workers')\n"
            "folder, report = extract(config); print(report.clips)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "48"


def audio_encoder_spec(audio_encoder: str, folder: Path) -> ExtractionSpec:
    """The spec of ``audio_encoder``; for wav2vec2, a tiny one saved into ``folder``."""
    if audio_encoder != "wav2vec2":
        return from_values(ExtractionSpec, {"audio_encoder": audio_encoder})
    saved_wav2vec2(folder / "tiny-wav2vec2")
    return from_values(ExtractionSpec, {"audio_encoder": "wav2vec2", "audio_weights": str(folder / "tiny-wav2vec2"),
                                        "audio_layer": 2})


@pytest.mark.parametrize("audio_encoder", ["egemaps", "compare", "wav2vec2"])
def test_audio_features_made_in_the_workers_are_those_the_main_process_makes(corpus, tmp_path, audio_encoder):
    """Up to float rounding for wav2vec2, whose clips share a batch with other neighbours in a worker's
    task than in the main process's batch."""
    spec = audio_encoder_spec(audio_encoder, tmp_path)
    folder, report = extract(config_for(corpus, tmp_path / "features", spec=spec))
    assert report.clips == 48 and report.seconds["audio_encoding"] > 0
    extractor = Extractor(spec)
    assert extractor.audio_encoder.in_workers("cpu")
    jobs = engine.load_jobs(config_for(corpus, tmp_path, spec=spec))[:3]
    with extractor.open_detector() as detector, FeatureStore(folder) as store:
        in_main = extractor.features([process_clip(job, detector, extractor.track) for job in jobs])
        for features in in_main:
            assert features.has_audio
            np.testing.assert_allclose(store.load(features.clip_id).audio, features.audio, rtol=0, atol=1e-6)


def test_only_the_encoders_on_the_cpu_run_in_the_workers(corpus, tmp_path):
    for audio_encoder, in_workers in (("egemaps", True), ("logmel", False), ("wav2vec2", True)):
        extractor = Extractor(audio_encoder_spec(audio_encoder, tmp_path))
        assert extractor.audio_encoder.in_workers("cpu") == in_workers
        # On a GPU only the encoders that take one clip at a time on the CPU run in the workers.
        assert extractor.audio_encoder.in_workers("cuda") == extractor.audio_encoder.per_clip
        job = engine.load_jobs(config_for(corpus, tmp_path))[0]
        engine._init_worker(extractor.spec.detector, extractor.spec.options_of("detector"),
                            tuple(map(str, extractor.detector_files)), extractor.track, None,
                            extractor.audio_encoder if in_workers else None)
        [media] = engine._work([job])
        assert (media.audio_features is not None) == in_workers and media.audio is not None
        engine._worker["detector"].close()
