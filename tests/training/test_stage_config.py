"""make train's config, composed of parts: the extraction and the manifest named by the options
that made them (as one string or one by one), its own options few, and a value that makes no
model one line and exit 2, before anything is created."""
from __future__ import annotations

import pytest

from common.config import listed_options, parse_config
from common.errors import ProjectError
from pipeline import train as train_stage
from training.stage import TrainStageConfig


def test_make_train_lists_few_options_and_names_its_inputs_with_one_each():
    assert listed_options(TrainStageConfig) <= 35
    text = train_stage_help()
    for listed in ("--features OPTIONS", "--manifest OPTIONS", "--lr LR", "--width WIDTH"):
        assert listed in text
    assert "--n-mels" not in text and "--min-face-score" not in text and "--ratings" not in text


def train_stage_help() -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        train_stage.main(["--help"])
    return out.getvalue()


def test_feature_and_manifest_options_are_taken_as_one_string_or_one_by_one():
    bundled = parse_config(TrainStageConfig, ["--features", "--audio-encoder egemaps --face-rate 5",
                                              "--manifest", "--label-rule plurality --corpus-dir elsewhere"])
    alone = parse_config(TrainStageConfig, ["--audio-encoder", "egemaps", "--face-rate", "5",
                                            "--label-rule", "plurality", "--corpus-dir", "elsewhere"])
    assert bundled == alone
    assert bundled.features.folder_name() == alone.features.folder_name()
    assert (bundled.manifest.label_rule, bundled.manifest.corpus_dir) == ("plurality", "elsewhere")
    given_alone_wins = parse_config(TrainStageConfig, ["--features", "--face-rate 5", "--face-rate", "10"])
    assert given_alone_wins.features.face_rate == 10


def test_the_manifest_takes_the_runs_dataset_and_partition():
    config = parse_config(TrainStageConfig, ["--dataset", "crema", "--partition", "3", "--force"])
    assert (config.manifest.dataset, config.manifest.partition) == ("crema", 3)
    assert config.force and not config.manifest.force  # retraining does not rebuild the manifest


def test_a_string_of_unknown_feature_options_is_one_line():
    with pytest.raises(ProjectError, match="--features '--bogus 1': --bogus 1 is not one of its options"):
        parse_config(TrainStageConfig, ["--features", "--bogus 1"])


@pytest.mark.parametrize("argv, message", [
    (["--width", "7", "--num-heads", "2"], "--width must be within 4..4096 and divisible by --num-heads"),
    (["--audio-pool", "0"], "--audio-pool '0'"),
    (["--features", "--n-mels 100000"], "--n-mels must be within 1..201"),
])
def test_a_value_that_makes_no_model_or_features_is_one_line_and_exit_2(argv, message, tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.chdir(tmp_path)
    assert train_stage.main(["--preset", "none", *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1 and error.startswith("train: ")
    assert list(tmp_path.iterdir()) == []
