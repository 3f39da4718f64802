"""Cross-corpus evaluation's parts that need no trained run: class matching, the features command,
and the options refused before anything is read."""
from __future__ import annotations

from common.config import parse_config
from corpora.registry import ManifestConfig
from extract.engine import FeaturesConfig
from extract.spec import ExtractionRecord
from inference.cross_corpus import class_mapping, features_command
from pipeline.evaluate import main


def test_classes_are_matched_by_name_in_the_run_order():
    mapping = class_mapping(("angry", "sad", "disgust", "fear", "neutral", "happy"),
                            ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"))
    assert mapping == {"shared": ("angry", "sad", "disgust", "fear", "neutral", "happy"), "run_only": [],
                       "dataset_only": ["calm", "surprise"]}


def test_the_features_command_carries_the_run_options_and_the_corpus():
    spec = parse_config(FeaturesConfig, ["--face-rate", "5", "--detect-every", "2"]).spec
    target = ManifestConfig(dataset="labelled", corpus_dir="mine", labels="mine/l.csv")
    assert features_command(target, ExtractionRecord(spec, {})) == (
        'make features DATASET=labelled FEATURES="--face-rate 5.0 --detect-every 2" '
        'ARGS="--corpus-dir mine --labels mine/l.csv"')
    assert features_command(ManifestConfig(dataset="ravdess"), ExtractionRecord(FeaturesConfig().spec, {})) == (
        "make features DATASET=ravdess")


def test_cross_corpus_options_are_checked_first(capsys):
    assert main(["--on-split", "half"]) == 2
    assert "--on-split must be one of train, development, test, all" in capsys.readouterr().err
    assert main(["--on-corpus-dir", "elsewhere"]) == 2
    assert "--on-corpus-dir name the corpus of a cross-corpus evaluation; give --on-dataset" in capsys.readouterr().err
