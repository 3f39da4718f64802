"""Training: data joining and batching, modality drop-out, the loop, checkpoints, resume, baselines, the stage.

The fixture (training_fixture.py) is a small real setup: a manifest of 4 actors and HDF5 shards
of synthetic features that a small model learns in a few epochs.
"""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import f1_score
from training_fixture import (
    EMBEDDING_DIM,
    FAST,
    FEATURES_NAME,
    N_MELS,
    NO_AUDIO,
    NO_FACE,
    TINY_STAGE_ARGS,
    setup,  # noqa: F401 (a fixture)
    write_features,
)

import pipeline.train as train_stage
import training.loop as training
import training.stage as training_stage
from extract.shards import FeatureStore
from extract.spec import ExtractionRecord
from model.auxformer import AuxFormer
from model.data import BucketBatchSampler, FeatureMismatch, check_features, collate, evaluation_loader
from model.evaluation import condition_logits
from model.variants import VARIANTS
from training.config import TrainConfig, TrainingError
from training.loop import drop_modalities, evaluate, learning_rate, make_optimizer, variant_loss
from training.run_folder import RunFolder


def load_checkpoint(path: Path) -> dict:
    return RunFolder(path.parent).load_checkpoint(path.name)


def train(model_config, config, train_data, dev_data, run_dir: Path):
    return training.train(model_config, config, train_data, dev_data, RunFolder(run_dir))


def test_fixture_has_a_speaker_independent_partition(setup):
    speakers = {split: {clip.speaker for clip in setup.manifest.in_split(split)}
                for split in ("train", "development", "test")}
    assert [len(s) for s in speakers.values()] == [2, 1, 1]


def test_dataset_skips_and_reports_clips_without_features(setup):
    train_data = setup.data("train")
    assert train_data.missing == [setup.skipped]
    assert len(train_data) == len(setup.manifest.in_split("train")) - 1


def test_padding_keeps_lengths_and_marks_missing_modalities(setup):
    data = setup.data("train")
    examples = [data[i] for i in range(len(data))]
    batch = collate(examples)
    lengths = data.lengths()
    assert batch.audio_lengths.tolist() == [audio for audio, _ in lengths]
    assert batch.video_lengths.tolist() == [video for _, video in lengths]
    assert batch.audio.shape == (len(data), max(a for a, _ in lengths), N_MELS)
    assert batch.video.shape == (len(data), max(v for _, v in lengths), EMBEDDING_DIM)
    for row, example in enumerate(examples):
        _, sentence, emotion, _ = example.clip_id.split("_")
        assert ((sentence, emotion) == NO_AUDIO) == (batch.audio_lengths[row] == 0)
        assert ((sentence, emotion) == NO_FACE) == (batch.video_lengths[row] == 0)
        audio_length, video_length = int(batch.audio_lengths[row]), int(batch.video_lengths[row])
        assert torch.equal(batch.audio[row, :audio_length], example.audio)
        assert not batch.audio[row, audio_length:].any() and not batch.video[row, video_length:].any()
    # Frames without a face stay in the sequence as zeros: some rows have zero steps inside their length.
    inside = torch.arange(batch.video.shape[1])[None, :] < batch.video_lengths[:, None]
    assert ((batch.video.abs().sum(-1) == 0) & inside).any()


def test_bucket_sampler_is_deterministic_complete_and_groups_similar_lengths():
    lengths = np.random.default_rng(1).integers(10, 500, 60).tolist()
    sampler = BucketBatchSampler(lengths, batch_size=10, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    assert first == list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(60))
    assert len(first) == len(sampler) == 6
    # 60 clips fit one pool: the batches are consecutive stretches of the sorted lengths.
    spans = sorted((min(lengths[i] for i in batch), max(lengths[i] for i in batch)) for batch in first)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))
    sampler.set_epoch(2)
    assert list(sampler) != first
    for size in (1, 7, 80, 81, 200):
        sampler = BucketBatchSampler(list(range(size)), batch_size=10, seed=0)
        assert len(list(sampler)) == len(sampler)


def test_distributed_processes_share_out_every_batch_and_take_equal_steps():
    lengths = list(range(100))
    alone = list(BucketBatchSampler(lengths, 8, seed=2))
    for world_size in (2, 3):
        shares = [list(BucketBatchSampler(lengths, 8, seed=2, rank=rank, world_size=world_size))
                  for rank in range(world_size)]
        assert {len(share) for share in shares} == {-(-len(alone) // world_size)}
        # The same batches as one process, spread over the processes; a few repeated to even out.
        assert {tuple(batch) for share in shares for batch in share} == {tuple(batch) for batch in alone}


def test_every_process_takes_as_many_batches_even_with_fewer_batches_than_processes():
    for world_size in range(2, 6):
        for batch_count in range(1, 4):
            lengths = list(range(8 * batch_count))
            alone = list(BucketBatchSampler(lengths, 8, seed=0))
            samplers = [BucketBatchSampler(lengths, 8, seed=0, rank=rank, world_size=world_size)
                        for rank in range(world_size)]
            shares = [list(sampler) for sampler in samplers]
            steps = -(-batch_count // world_size)
            assert [len(share) for share in shares] == [len(sampler) for sampler in samplers] == [steps] * world_size
            assert {tuple(batch) for share in shares for batch in share} == {tuple(batch) for batch in alone}


def test_a_step_budget_cuts_only_the_batches_that_would_pad_past_it():
    lengths = np.random.default_rng(5).integers(10, 500, 100).tolist()
    lengths[7] = 5000  # longer than the budget alone
    plain = BucketBatchSampler(lengths, 16, seed=4)
    budgeted = BucketBatchSampler(lengths, 16, seed=4, max_steps=2000)
    roomy = BucketBatchSampler(lengths, 16, seed=4, max_steps=16 * max(lengths))
    for epoch in (1, 2):
        for sampler in (plain, budgeted, roomy):
            sampler.set_epoch(epoch)
        batches = list(budgeted)
        assert list(roomy) == list(plain)  # a budget no batch reaches changes nothing
        assert len(batches) == len(budgeted) > len(plain)
        assert sorted(i for batch in batches for i in batch) == list(range(100))
        assert all(len(batch) * max(lengths[i] for i in batch) <= 2000 for batch in batches if batch != [7])
        assert [7] in batches
        # The cut batches are parts of the batches without a budget.
        assert all(any(set(batch) <= set(whole) for whole in plain) for batch in batches)
    shares = [BucketBatchSampler(lengths, 16, seed=4, rank=rank, world_size=3, max_steps=2000) for rank in range(3)]
    assert len({len(list(share)) for share in shares}) == 1


def test_modality_dropout_follows_its_rates_and_never_drops_both():
    clips = 40_000
    generator = torch.Generator().manual_seed(0)
    keep_audio, keep_video = drop_modalities(torch.full((clips,), 50), torch.full((clips,), 15), 0.2, 0.3, generator)
    assert (keep_audio | keep_video).all()
    assert abs((~keep_audio).float().mean().item() - 0.2) < 0.01
    assert abs((~keep_video).float().mean().item() - 0.3) < 0.01
    # A clip with one modality already missing keeps the other.
    _, keep_video = drop_modalities(torch.zeros(clips, dtype=torch.long), torch.full((clips,), 15), 0.5, 0.5,
                                    generator)
    assert keep_video.all()


def test_batch_dropout_drops_a_modality_from_the_whole_batch_at_its_rate():
    generator = torch.Generator().manual_seed(1)
    audio_lengths, video_lengths = torch.full((8,), 50), torch.full((8,), 15)
    video_lengths[3] = 0  # this clip has only audio, and keeps it whatever the batch loses
    kept = [drop_modalities(audio_lengths, video_lengths, 0.2, 0.3, generator, unit="batch") for _ in range(20_000)]
    dropped_audio = [not keep_audio[0] for keep_audio, _ in kept]
    dropped_video = [not keep_video[0] for _, keep_video in kept]
    for keep_audio, keep_video in kept:
        assert keep_audio[3]
        assert len(set(keep_audio[[0, 1, 2, 4, 5, 6, 7]].tolist())) == len(set(keep_video.tolist())) == 1
    assert abs(np.mean(dropped_audio) - 0.2) < 0.01 and abs(np.mean(dropped_video) - 0.3) < 0.01
    assert not any(a and v for a, v in zip(dropped_audio, dropped_video))


def _all_missing(batch, modality: str):
    return batch._replace(**{f"{modality}_lengths": torch.zeros_like(batch.audio_lengths)})


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_the_learned_stand_in_trains_the_head_of_a_modality_missing_from_every_clip(setup, modality):
    batch = _all_missing(collate([setup.data("train")[i] for i in range(8)]), modality)
    torch.manual_seed(0)
    model = AuxFormer(replace(setup.model_config(), num_layers=5, missing_stand_in="learned"))
    config = TrainConfig(missing_head_loss=True, **FAST)
    optimizer = make_optimizer(model, config)
    stand_in = getattr(model, f"{modality}_missing")
    before = stand_in.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        outputs = model(batch.audio, batch.audio_lengths, batch.video, batch.video_lengths)
        loss = variant_loss(outputs, batch, VARIANTS["auxformer"], missing_head_loss=True)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
    assert not torch.equal(stand_in.detach(), before)  # the missing modality's head loss reaches the stand-in


def test_the_zero_stand_in_is_what_turns_a_missing_modalitys_head_loss_into_nan(setup):
    batch = collate([setup.data("train")[i] for i in range(8)])
    non_finite = []
    for modality in ("audio", "video"):
        torch.manual_seed(0)
        model = AuxFormer(replace(setup.model_config(), num_layers=5, missing_stand_in="zero"))
        missing = _all_missing(batch, modality)
        outputs = model(missing.audio, missing.audio_lengths, missing.video, missing.video_lengths)
        variant_loss(outputs, missing, VARIANTS["auxformer"], missing_head_loss=True).backward()
        non_finite += [name for name, p in model.named_parameters() if p.grad is not None
                       and not torch.isfinite(p.grad).all()]
    assert non_finite


def test_the_missing_heads_loss_is_refused_with_the_zero_stand_in(setup, tmp_path):
    config = TrainConfig(epochs=1, missing_head_loss=True, **FAST)
    with pytest.raises(TrainingError, match="--missing-head-loss needs --missing-stand-in learned"):
        train(setup.model_config(), config, setup.data("train"), setup.data("development"), tmp_path)


def test_training_reduces_dev_loss_and_writes_the_run_folder(setup, tmp_path):
    config = TrainConfig(epochs=8, **FAST)
    dev_data = setup.data("development")
    torch.manual_seed(config.seed)
    untrained = evaluate(AuxFormer(setup.model_config()), evaluation_loader(dev_data, 16, 0), config,
                         torch.device("cpu"))
    result = train(setup.model_config(), config, setup.data("train"), dev_data, tmp_path)
    assert min(row["dev_loss"] for row in result.history) < 0.6 * untrained["loss"]
    assert max(row["dev_macro_f1"] for row in result.history) > 0.6
    for name in ("best.pt", "last.pt", "metrics.csv", "train.log", "curve.png"):
        assert (tmp_path / name).is_file(), name
    with (tmp_path / "metrics.csv").open() as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == list(range(1, 9))


def test_checkpoints_rebuild_the_model_from_the_file_alone(setup, tmp_path):
    config = TrainConfig(epochs=3, select_by="macro_f1", **FAST)
    dev_data = setup.data("development")
    result = train(setup.model_config(), config, setup.data("train"), dev_data, tmp_path)
    for name, row in (("last.pt", result.history[-1]), ("best.pt", result.history[result.best["epoch"] - 1])):
        checkpoint = load_checkpoint(tmp_path / name)
        assert set(checkpoint) >= {"model_config", "train_config", "epoch", "best", "model_state"}
        model = AuxFormer.from_checkpoint(checkpoint)
        scores = evaluate(model, evaluation_loader(dev_data, 5, 0), config, torch.device("cpu"))
        assert scores["loss"] == pytest.approx(row["dev_loss"], abs=1e-6)
        assert scores["macro_f1"] == pytest.approx(row["dev_macro_f1"], abs=1e-9)


@pytest.mark.parametrize("schedule", [{}, {"lr_schedule": "cosine", "weight_decay": 0.05},
                                      {"lr_schedule": "cosine", "max_batch_steps": 300}],
                         ids=["constant", "cosine-with-weight-decay", "cosine-with-a-step-budget"])
def test_resume_equals_an_uninterrupted_run(setup, tmp_path, monkeypatch, schedule):
    config = TrainConfig(epochs=3, **FAST, **schedule)
    whole = train(setup.model_config(), config, setup.data("train"), setup.data("development"), tmp_path / "whole")
    interrupted = tmp_path / "interrupted"
    epochs_begun = []
    uninterrupted_epoch = training.train_epoch

    def killed_in_the_second_epoch(*args, **kwargs):
        epochs_begun.append(True)
        if len(epochs_begun) == 2:
            raise KeyboardInterrupt
        return uninterrupted_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", killed_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(setup.model_config(), config, setup.data("train"), setup.data("development"), interrupted)
    monkeypatch.setattr(training, "train_epoch", uninterrupted_epoch)
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 1
    resumed = train(setup.model_config(), config, setup.data("train"), setup.data("development"), interrupted)
    for ours, theirs in zip(resumed.history, whole.history, strict=True):
        for column in ("train_loss", "dev_loss", "dev_macro_f1"):
            assert ours[column] == pytest.approx(theirs[column], abs=1e-6)
    whole_state = load_checkpoint(tmp_path / "whole" / "last.pt")["model_state"]
    resumed_state = load_checkpoint(interrupted / "last.pt")["model_state"]
    for name, weights in whole_state.items():
        assert torch.allclose(resumed_state[name], weights, atol=1e-6), name


def test_a_run_resumes_only_with_the_batch_step_budget_it_trained_with(setup, tmp_path):
    config = TrainConfig(epochs=1, max_batch_steps=300, **FAST)
    train(setup.model_config(), config, setup.data("train"), setup.data("development"), tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["batch_step_budget"] == 300
    assert "batches of at most 300 padded steps" in (tmp_path / "train.log").read_text()
    for other in (-1, 0):  # none; auto, which is none on CPU
        with pytest.raises(TrainingError, match="batch step budget 300 != none"):
            train(setup.model_config(), replace(config, epochs=2, max_batch_steps=other), setup.data("train"),
                  setup.data("development"), tmp_path)
    result = train(setup.model_config(), replace(config, epochs=2), setup.data("train"), setup.data("development"),
                   tmp_path)
    assert len(result.history) == 2


def test_a_checkpoint_from_before_step_budgets_resumes_without_one(setup, tmp_path):
    config = TrainConfig(epochs=1, **FAST)
    train(setup.model_config(), config, setup.data("train"), setup.data("development"), tmp_path)
    run = RunFolder(tmp_path)
    checkpoint = run.load_checkpoint("last.pt")
    del checkpoint["batch_step_budget"]
    run.save_checkpoint(checkpoint, "last.pt")
    result = train(setup.model_config(), replace(config, epochs=2), setup.data("train"), setup.data("development"),
                   tmp_path)
    assert len(result.history) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: --device auto takes it")
def test_the_log_says_when_device_auto_falls_back_to_the_cpu(setup, tmp_path):
    train(setup.model_config(), TrainConfig(epochs=1, **{**FAST, "device": "auto"}), setup.data("train"),
          setup.data("development"), tmp_path)
    log = (tmp_path / "train.log").read_text()
    assert log.count("on cpu (--device auto: CUDA is not available, torch.cuda.is_available() is False)") == 1


def test_the_cosine_schedule_decays_to_zero_over_the_run_and_cannot_be_stretched_on_resume(setup, tmp_path):
    config = replace(TrainConfig(epochs=2, lr_schedule="cosine", **FAST), lr=1e-3)
    assert learning_rate(config, 0, 100) == pytest.approx(1e-3)
    assert learning_rate(config, 50, 100) == pytest.approx(5e-4)
    assert learning_rate(config, 99, 100) < 1e-6
    assert learning_rate(replace(config, lr_schedule="constant"), 99, 100) == 1e-3
    train(setup.model_config(), config, setup.data("train"), setup.data("development"), tmp_path)
    with pytest.raises(TrainingError, match="cosine schedule"):
        train(setup.model_config(), replace(config, epochs=4), setup.data("train"), setup.data("development"),
              tmp_path)


def test_auxformer_is_scored_on_the_average_of_its_heads_as_it_predicts(setup, tmp_path):
    config = TrainConfig(epochs=2, **FAST)
    dev_data = setup.data("development")
    result = train(setup.model_config(), config, setup.data("train"), dev_data, tmp_path)
    model = AuxFormer.from_checkpoint(load_checkpoint(tmp_path / "last.pt"))
    logits, labels, _ = condition_logits(model, dev_data, "audio_visual", 8, torch.device("cpu"))
    expected = f1_score(labels, logits[VARIANTS["auxformer"].predicting_head].argmax(axis=1), average="macro")
    assert result.history[-1]["dev_macro_f1"] == pytest.approx(expected, abs=1e-9)


UNTOUCHED = {
    "mult": ("audio_auxiliary.", "video_auxiliary.", "auxiliary_head."),
    "audio": ("video_projection.", "video_auxiliary.", "audio_with_video.", "video_with_audio.", "audio_fusion.",
              "video_fusion.", "fusion_head."),
    "video": ("audio_projection.", "audio_auxiliary.", "audio_with_video.", "video_with_audio.", "audio_fusion.",
              "video_fusion.", "fusion_head."),
}


@pytest.mark.parametrize("variant", ["mult", "audio", "video"])
def test_baselines_train_only_their_own_parts(setup, tmp_path, variant):
    config = TrainConfig(model=variant, epochs=1, **FAST)
    torch.manual_seed(config.seed)
    initial = AuxFormer(setup.model_config()).state_dict()
    train(setup.model_config(), config, setup.data("train"), setup.data("development"), tmp_path)
    trained = load_checkpoint(tmp_path / "last.pt")["model_state"]
    untouched = [name for name in initial if name.startswith(UNTOUCHED[variant])]
    changed = [name for name in initial if not torch.equal(initial[name], trained[name])]
    assert untouched and changed
    assert not set(untouched) & set(changed)

    batch = VARIANTS[variant].inputs(collate([setup.data("train")[i] for i in range(8)]))
    if variant == "audio":
        assert not batch.video_lengths.any() and batch.audio_lengths.any()
    if variant == "video":
        assert not batch.audio_lengths.any() and batch.video_lengths.any()
    model = AuxFormer(setup.model_config())
    variant_loss(model(batch.audio, batch.audio_lengths, batch.video, batch.video_lengths), batch,
                 VARIANTS[variant]).backward()
    for name, parameter in model.named_parameters():
        if name.startswith(UNTOUCHED[variant]):
            assert parameter.grad is None or not parameter.grad.any(), name


class RecordingStore(FeatureStore):
    """A FeatureStore that remembers which clips were loaded."""

    loaded: set[str] = set()

    def load(self, clip_id: str):
        RecordingStore.loaded.add(clip_id)
        return super().load(clip_id)


def test_stage_trains_resumes_skips_and_never_loads_the_test_split(setup, monkeypatch, capsys):
    monkeypatch.chdir(setup.workspace)
    monkeypatch.setattr(training_stage, "FeatureStore", RecordingStore)
    RecordingStore.loaded = set()
    args = ["--corpus-dir", str(setup.corpus), *TINY_STAGE_ARGS]
    assert train_stage.main([*args, "--epochs", "1"]) == 0
    run_dir = Path("runs/demo/p1/auxformer")
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert train_stage.main([*args, "--epochs", "2"]) == 0
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2
    test_ids = {clip.clip_id for clip in setup.manifest.in_split("test")}
    assert RecordingStore.loaded and not RecordingStore.loaded & test_ids

    record = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert Path(record["data"]["features"]).resolve() == setup.features.resolve()
    assert ExtractionRecord.load(run_dir).spec.logmel.n_mels == N_MELS
    assert record["model"]["audio_dim"] == N_MELS and record["model"]["video_dim"] == EMBEDDING_DIM
    assert "1 of" in (run_dir / "train.log").read_text()

    modified = (run_dir / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert train_stage.main([*args, "--epochs", "2"]) == 0
    assert "is finished" in capsys.readouterr().out
    assert (run_dir / "last.pt").stat().st_mtime_ns == modified
    assert train_stage.main([*args, "--epochs", "2", "--lr", "0.02"]) == 2
    assert "other settings (--lr)" in capsys.readouterr().err


def test_torchrun_trains_in_two_processes_where_only_rank_0_writes_and_resumes(setup, tmp_path):
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}

    def torchrun(epochs: int) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   "-m", "pipeline.train", "--corpus-dir", str(setup.corpus), "--runs-root", str(tmp_path),
                   *TINY_STAGE_ARGS, "--epochs", str(epochs)]
        return subprocess.run(command, cwd=setup.workspace, env=environment, capture_output=True, text=True,
                              timeout=300)

    finished = torchrun(2)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("train: run folder") == 1
    run_dir = tmp_path / "demo" / "p1" / "auxformer"
    log = (run_dir / "train.log").read_text()
    assert log.count("in 2 processes") == 1 and log.count("epoch 2/2") == 1
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["epoch"] == 2 and len(checkpoint["random_state"]) == 2
    assert checkpoint["history"][-1]["train_loss"] < checkpoint["history"][0]["train_loss"]

    resumed = torchrun(3)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in (run_dir / "train.log").read_text()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 3


def test_torchrun_with_more_processes_than_batches_finishes(setup, tmp_path):
    """The train and development splits are one batch each for four processes: each takes the batch,
    where a process without one would wait for the others' gradients forever."""
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
               "-m", "pipeline.train", "--corpus-dir", str(setup.corpus), "--runs-root", str(tmp_path),
               *TINY_STAGE_ARGS, "--batch-size", "64", "--epochs", "1"]
    # In a session of its own: torchrun's workers outlive a torchrun killed at the timeout.
    process = subprocess.Popen(command, cwd=setup.workspace, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, errors = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"four processes on one batch did not finish in 240 s: {process.communicate()[1][-3000:]}")
    assert process.returncode == 0, errors[-3000:]
    log = (tmp_path / "demo" / "p1" / "auxformer" / "train.log").read_text()
    assert "in 4 processes" in log and "epoch 1/1" in log
    assert len(load_checkpoint(tmp_path / "demo" / "p1" / "auxformer" / "last.pt")["random_state"]) == 4


def test_stage_reports_missing_features(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_stage.main(["--dataset", "crema"]) == 2
    assert "run make features DATASET=crema" in capsys.readouterr().err


def test_stage_refuses_to_resume_on_features_of_another_size(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "features" / "demo" / FEATURES_NAME
    write_features(folder, setup.manifest, skip=set())
    args = ["--corpus-dir", str(setup.corpus), *TINY_STAGE_ARGS]
    assert train_stage.main([*args, "--epochs", "1"]) == 0
    shutil.rmtree(folder)
    write_features(folder, setup.manifest, skip=set(), n_mels=N_MELS + 4)
    assert train_stage.main([*args, "--epochs", "2"]) == 2
    assert "other settings (model.audio_dim)" in capsys.readouterr().err
    with pytest.raises(FeatureMismatch, match="do not match the model"):
        check_features(FeatureStore(setup.features), replace(setup.model_config(), video_dim=EMBEDDING_DIM + 1))


def test_weight_decay_reaches_only_the_2d_weights(setup):
    model = AuxFormer(setup.model_config())
    decayed, kept = make_optimizer(model, TrainConfig(weight_decay=0.05, **FAST)).param_groups
    assert decayed["weight_decay"] == 0.05 and kept["weight_decay"] == 0.0
    assert all(p.ndim == 2 or p.ndim == 3 for p in decayed["params"])
    names = {id(p): name for name, p in model.named_parameters()}
    kept_names = [names[id(p)] for p in kept["params"]]
    assert any("norm" in name for name in kept_names) and any(name.endswith("bias") for name in kept_names)
    assert any("residual_weight" in name for name in kept_names)


def test_gradient_clipping_bounds_the_gradient_norm(setup, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm):
        parameters = list(parameters)
        clip(parameters, max_norm)
        gradients = [p.grad.norm() for p in parameters if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(gradients))))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    config = TrainConfig(epochs=1, grad_clip=0.05, **FAST)
    model = AuxFormer(setup.model_config())
    loader = training.training_loader(setup.data("train"), 16, 0, 0)
    loader.batch_sampler.set_epoch(1)
    training.train_epoch(model, loader, make_optimizer(model, config), config, torch.Generator().manual_seed(0),
                         torch.device("cpu"), 0, len(loader))
    assert norms and max(norms) <= 0.05 + 1e-6


def test_stage_rejects_an_unknown_model(capsys):
    assert train_stage.main(["--model", "transformer"]) == 2
    assert "unknown model 'transformer'" in capsys.readouterr().err


def test_missing_modality_gives_finite_gradients_at_the_reference_depth(setup):
    batch = collate([setup.data("train")[i] for i in range(6)])
    batch = batch._replace(video_lengths=batch.video_lengths.index_fill(0, torch.tensor([1]), 0),
                           audio_lengths=batch.audio_lengths.index_fill(0, torch.tensor([2]), 0))
    torch.manual_seed(0)
    model = AuxFormer(replace(setup.model_config(), num_layers=5))
    variant_loss(model(batch.audio, batch.audio_lengths, batch.video, batch.video_lengths), batch,
                 VARIANTS["auxformer"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_non_finite_loss_stops_training_with_what_to_do(setup, tmp_path):
    config = TrainConfig(epochs=3, **{**FAST, "lr": 1e9})  # a rate that blows the weights up within steps
    with pytest.raises(TrainingError, match="training loss became (nan|inf).*Lower --lr"):
        train(setup.model_config(), config, setup.data("train"), setup.data("development"), tmp_path)
