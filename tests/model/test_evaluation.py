"""Evaluation: scores, removed modalities, the heads' averages, and the make eval stage's files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_fixture import TINY_STAGE_ARGS, setup  # noqa: F401 (setup is a fixture)

import pipeline.evaluate as evaluate_stage
import pipeline.train as train_stage
from extract.shards import FeatureStore
from model.auxformer import AuxFormer
from model.data import ClipDataset
from model.evaluation import condition_logits, scores
from model.variants import ALL_HEADS, CONDITIONS, head_logits
from training.run_folder import RunFolder


def test_scores_follow_the_confusion_counts():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 1, 1])
    result = scores(labels, predictions, ("a", "b", "c"))
    assert result["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["f1_micro"] == pytest.approx(4 / 6)
    # Per class: a precision 1, recall 2/3, F1 0.8; b precision 0.5, recall 1, F1 2/3; c never predicted, 0.
    assert result["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert result["f1_macro"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert result["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_present_average_leaves_out_the_heads_of_removed_modalities():
    main, audio, visual = torch.tensor([[3.0]]), torch.tensor([[6.0]]), torch.tensor([[9.0]])
    assert head_logits(main, audio, visual, True, True)["present_average"].item() == 6.0
    assert head_logits(main, audio, visual, True, False)["present_average"].item() == 4.5
    assert head_logits(main, audio, visual, False, True)["present_average"].item() == 6.0
    assert head_logits(main, audio, visual, False, True)["average"].item() == 6.0


class NoisyAudio(ClipDataset):
    """The same clips with their audio replaced by noise."""

    def __getitem__(self, index: int):
        example = super().__getitem__(index)
        return example._replace(audio=torch.randn_like(example.audio))


def test_a_removed_modality_is_fed_as_missing_whatever_its_content(setup):  # noqa: F811
    torch.manual_seed(0)
    model = AuxFormer(setup.model_config()).eval()
    store = FeatureStore(setup.features)
    clips, classes = setup.manifest.in_split("test"), setup.manifest.meta.classes
    data, noisy = ClipDataset(store, clips, classes, False), NoisyAudio(store, clips, classes, False)
    cpu = torch.device("cpu")
    video_only, labels, clip_ids = condition_logits(model, data, "video_only", 8, cpu)
    assert len(clip_ids) == len(labels) == len(data)
    video_only_noisy, _, _ = condition_logits(model, noisy, "video_only", 8, cpu)
    for head in ALL_HEADS:
        np.testing.assert_allclose(video_only[head], video_only_noisy[head], atol=1e-6)
    # With both modalities fed, the audio does count.
    both, _, _ = condition_logits(model, data, "audio_visual", 8, cpu)
    both_noisy, _, _ = condition_logits(model, noisy, "audio_visual", 8, cpu)
    assert not np.allclose(both["main"], both_noisy["main"], atol=1e-3)
    store.close()


def test_eval_stage_writes_every_condition_and_head_and_says_what_it_evaluated(setup, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(setup.workspace)
    common = ["--corpus-dir", str(setup.corpus), "--runs-root", "eval-runs"]
    assert evaluate_stage.main(["--runs-root", "eval-runs"]) == 2
    assert "make train" in capsys.readouterr().err

    assert train_stage.main([*common, *TINY_STAGE_ARGS, "--epochs", "3"]) == 0
    assert evaluate_stage.main(["--runs-root", "eval-runs"]) == 0
    printed = capsys.readouterr().out
    assert "| audio_only |" in printed

    run_dir = Path("eval-runs/demo/p1/auxformer")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["checkpoint_epoch"] == RunFolder(run_dir).load_checkpoint()["epoch"]
    assert metrics["clips"] == len(setup.manifest.in_split("test"))
    assert set(metrics["results"]) == set(CONDITIONS)
    for by_head in metrics["results"].values():
        assert set(by_head) == set(ALL_HEADS)
        for result in by_head.values():
            assert sum(map(sum, result["confusion"])) == metrics["clips"]
            assert 0.0 <= result["f1_macro"] <= 1.0
    assert [row["condition"] for row in metrics["head_comparison"]] == list(CONDITIONS)
    report = (run_dir / "report.md").read_text()
    assert "## f1_macro" in report and "present heads" in report
    assert (run_dir / "confusion.png").stat().st_size > 10_000


def test_a_baseline_is_scored_on_its_own_head_where_it_has_its_modality(setup, monkeypatch):  # noqa: F811
    monkeypatch.chdir(setup.workspace)
    args = ["--corpus-dir", str(setup.corpus), "--runs-root", "eval-runs", *TINY_STAGE_ARGS, "--epochs", "1"]
    assert train_stage.main([*args, "--model", "audio"]) == 0
    assert evaluate_stage.main(["--runs-root", "eval-runs", "--model", "audio"]) == 0
    metrics = json.loads(Path("eval-runs/demo/p1/audio/metrics.json").read_text())
    assert list(metrics["results"]) == ["audio_only"]
    assert list(metrics["results"]["audio_only"]) == ["audio"]


def test_eval_finds_the_recorded_manifest_and_features_from_any_working_directory(setup, monkeypatch,  # noqa: F811
                                                                                  tmp_path):
    monkeypatch.chdir(setup.workspace)
    args = ["--corpus-dir", str(setup.corpus), "--runs-root", "eval-runs", *TINY_STAGE_ARGS, "--epochs", "1"]
    assert train_stage.main([*args, "--model", "mult"]) == 0
    run_dir = (setup.workspace / "eval-runs/demo/p1/mult").resolve()
    monkeypatch.chdir(tmp_path)
    assert evaluate_stage.main(["--run-dir", str(run_dir)]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["clips"] == len(setup.manifest.in_split("test"))
