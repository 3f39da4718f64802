"""MSP-IMPROV: the file-name parser on every real name of the published partition file, and the
reader on a fixture corpus written here in the distributed layout and Evaluation.txt format."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from corpora import msp_improv
from corpora.manifest import CorpusError, load_manifest
from corpora.msp_improv import ImprovName
from corpora.registry import ManifestConfig, build_manifest

REFERENCE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "msp-improv"
             / "reference-partition-1-dimensional.csv")

# One clip per speaker and session; the evaluations below decide their labels.
HEADER = "UTD-IMPROV-{name}.avi; {consensus}; A:3.000000; V:2.500000; D:3.000000 ; N:3.200000;"
EVALUATOR = "{rater}; {choice}; {others}; A:3; V:2; D:3; N:4;"
BLOCKS = {
    # name: (consensus letter, evaluator choices)
    "S01A-F01-R-FF01": ("A", ["Angry", "Angry", "Neutral"]),
    "S01A-M01-T-MF01": ("H", ["Happy", "Happy", "Angry", "Happy"]),
    "S02S-F02-S-FM01": ("S", ["Sad", "Neutral", "Sad", "Neutral"]),  # plurality tie
    "S02N-M02-P-MF02": ("N", ["Neutral", "Other", "Other", "Neutral", "Sad"]),  # tie with other
    "S03H-F03-P-FM03": ("O", ["Other", "Other", "Happy"]),
    "S03H-M03-S-MF03": ("X", ["Happy", "Sad", "Angry", "Neutral"]),
    "S04A-F04-T-FM04": ("A", ["Angry", "Angry", "Sad"]),
    "S04A-M04-T-MF04": ("A", ["Angry", "Sad", "Sad", "Sad", "Sad"]),  # consensus and votes disagree
    "S05S-F05-R-FF05": ("S", ["Sad", "Sad"]),
    "S05S-M05-R-MM05": ("N", ["Neutral", "Neutral", "Happy"]),
    "S06N-F06-S-FM06": ("N", ["Neutral"]),
    "S06N-M06-S-MF06": ("H", ["Happy", "Happy", "Happy"]),
}
NOT_EVALUATED = "S07H-F01-P-FM07"
EVALUATED_WITHOUT_MEDIA = "S08A-M02-P-MF08"
DUPLICATED_EVALUATOR = "S01A-F01-R-FF01"


def write_evaluations(path: Path, blocks: dict[str, tuple[str, list[str]]]) -> None:
    lines = []
    for name, (consensus, choices) in blocks.items():
        lines.append(HEADER.format(name=name, consensus=consensus))
        lines += [EVALUATOR.format(rater=f"rater{n:03d}", choice=choice, others="Frustrated, Concerned")
                  for n, choice in enumerate(choices)]
        if name == DUPLICATED_EVALUATOR:  # the release lists some evaluators twice for a clip
            lines.append(lines[-1])
        lines.append("")
    path.write_text("\n".join(lines))


@pytest.fixture
def corpus_root(tmp_path) -> Path:
    root = tmp_path / "msp-improv"
    for name in [*BLOCKS, NOT_EVALUATED]:
        parsed = ImprovName.parse(f"MSP-IMPROV-{name}")
        scenario_letter = name.split("-")[2]
        folder = root / f"session{parsed.session}" / name[:4] / scenario_letter
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"MSP-IMPROV-{name}.wav").touch()
        if name != "S06N-M06-S-MF06":  # one clip without its video
            (folder / f"MSP-IMPROV-{name}.avi").touch()
    (root / "session1" / "S01A" / "R" / "MSP-IMPROV-S01Z-F01-R-FF09.wav").touch()  # does not parse
    blocks = dict(BLOCKS)
    blocks[EVALUATED_WITHOUT_MEDIA] = ("A", ["Angry"])
    write_evaluations(root / msp_improv.EVALUATION_FILE, blocks)
    return root


@pytest.mark.skipif(not REFERENCE.is_file(), reason="../shared/corpora/msp-improv is not on this machine")
def test_parser_accepts_every_published_name():
    with REFERENCE.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 8385
    emotion_letter = {"angry": "A", "happy": "H", "sad": "S", "neutral": "N"}
    scenario_letter = {v: k for k, v in msp_improv.SCENARIOS.items()}
    for row in rows:
        name = ImprovName.parse(row["FileName"])
        fields = row["FileName"].removesuffix(".wav").split("-")  # MSP, IMPROV, S01A, F02, R, FF01
        assert name.clip_id == row["FileName"][: -len(".wav")]
        assert name.sex == row["Gender"]
        assert name.session == int(row["SpkrID"]) == int(fields[3][1:])  # SpkrID follows the session
        assert emotion_letter[name.emotion] == fields[2][3]
        assert scenario_letter[name.scenario] == fields[4]
        assert name.speaker == fields[3]
    assert Counter(ImprovName.parse(r["FileName"]).scenario for r in rows) == {
        "other-improvised": 4347, "natural-interaction": 2768, "target-improvised": 650, "target-read": 620}


@pytest.mark.parametrize("bad", ["MSP-IMPROV-S01A-F07-R-FF01", "MSP-IMPROV-S01B-F01-R-FF01",
                                 "MSP-IMPROV-S01A-F01-X-FF01",
                                 "1001_IEO_ANG_HI", "MSP-IMPROV-S01A-F01-R-FF1"])
def test_parser_rejects_other_names(bad):
    with pytest.raises(ValueError, match="MSP-IMPROV"):
        ImprovName.parse(bad)


def labels(root: Path, rule: str) -> dict[str, tuple[str, str]]:
    corpus = msp_improv.read_corpus(root, rule)
    return {clip.clip_id.removeprefix("MSP-IMPROV-"): (clip.label, clip.excluded) for clip in corpus.clips}


def test_consensus_labels(corpus_root):
    got = labels(corpus_root, "consensus")
    assert got["S01A-F01-R-FF01"] == ("angry", "")
    assert got["S04A-M04-T-MF04"] == ("angry", "")
    assert got["S03H-F03-P-FM03"] == ("", "consensus other")
    assert got["S03H-M03-S-MF03"] == ("", "no agreement")
    assert got[NOT_EVALUATED] == ("", "not evaluated")


def test_vote_rules(corpus_root):
    plurality = labels(corpus_root, "plurality")
    majority = labels(corpus_root, "majority")
    assert plurality["S02S-F02-S-FM01"] == ("", "tie")
    assert plurality["S02N-M02-P-MF02"] == ("", "tie")  # two Neutral, two Other
    assert plurality["S03H-F03-P-FM03"] == ("", "other on top")
    assert plurality["S04A-M04-T-MF04"] == ("sad", "")
    # 2 of 3: the copied line of the third evaluator is not counted (2 of 4 would be no majority)
    assert majority["S01A-F01-R-FF01"] == ("angry", "")
    assert majority["S03H-M03-S-MF03"] == ("", "no majority")
    distributional = {c.clip_id.removeprefix("MSP-IMPROV-"): c
                      for c in msp_improv.read_corpus(corpus_root, "distributional").clips}
    # angry, sad, neutral, happy; the two "Other" votes are left out of the probabilities
    assert distributional["S02N-M02-P-MF02"].soft_label == pytest.approx((0, 1 / 3, 2 / 3, 0))
    assert distributional["S02N-M02-P-MF02"].label == ""  # Neutral ties with Other: no plurality class
    assert distributional["S02N-M02-P-MF02"].excluded == ""
    assert distributional["S04A-M04-T-MF04"].label == "sad"
    assert distributional["S03H-F03-P-FM03"].soft_label == (0, 0, 0, 1)


def test_intended_labels_and_corpus_fields(corpus_root):
    corpus = msp_improv.read_corpus(corpus_root, "intended")
    clip = next(c for c in corpus.clips if c.clip_id == "MSP-IMPROV-S02N-M02-P-MF02")
    assert (clip.label, clip.speaker, clip.sex) == ("neutral", "M02", "Male")
    assert clip.extra == {"sentence": "S02", "session": "02", "scenario": "natural-interaction"}
    assert clip.audio_path == "session2/S02N/P/MSP-IMPROV-S02N-M02-P-MF02.wav"
    assert clip.video_path == "session2/S02N/P/MSP-IMPROV-S02N-M02-P-MF02.avi"
    video_less = next(c for c in corpus.clips if c.clip_id == "MSP-IMPROV-S06N-M06-S-MF06")
    assert video_less.audio_path and not video_less.video_path


def test_unparseable_and_unmatched_files_are_reported(corpus_root):
    corpus = msp_improv.read_corpus(corpus_root, "consensus")
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert "not an MSP-IMPROV clip name" in reasons["session1/S01A/R/MSP-IMPROV-S01Z-F01-R-FF09.wav"]
    assert reasons[f"Evaluation.txt: MSP-IMPROV-{EVALUATED_WITHOUT_MEDIA}"] == "evaluated but no media file"
    assert len(corpus.clips) == len(BLOCKS) + 1


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_partitions_hold_out_whole_sessions(corpus_root, tmp_path, k):
    folder, _ = build_manifest(ManifestConfig(dataset="improv", corpus_dir=str(corpus_root), label_rule="intended",
                                              partition=k, manifests_dir=tmp_path))
    clips = load_manifest(folder).clips
    sessions = {split: {c.extra["session"] for c in clips if c.split == split}
                for split in ("train", "development", "test")}
    development, test = msp_improv.HELD_OUT_SESSIONS[k]
    assert sessions["development"] == {f"{development:02d}"}
    assert sessions["test"] == {f"{test:02d}"}
    assert len(sessions["train"]) == 4 and not sessions["train"] & (sessions["development"] | sessions["test"])
    for split in ("development", "test"):
        assert {c.sex for c in clips if c.split == split} == {"Male", "Female"}


def test_bad_evaluation_line_stops_with_its_line_number(corpus_root):
    path = corpus_root / msp_improv.EVALUATION_FILE
    lines = path.read_text().splitlines()
    lines.insert(2, "rater999, Angry, A:3, V:2")
    path.write_text("\n".join(lines))
    with pytest.raises(CorpusError, match=r"Evaluation.txt line 3: expected"):
        msp_improv.read_corpus(corpus_root, "plurality")


def test_missing_evaluation_file_and_wrong_options(corpus_root):
    (corpus_root / msp_improv.EVALUATION_FILE).unlink()
    with pytest.raises(CorpusError, match="Evaluation.txt not found"):
        msp_improv.read_corpus(corpus_root, "consensus")
    assert len(msp_improv.read_corpus(corpus_root, "intended").clips) == len(BLOCKS) + 1
    with pytest.raises(CorpusError, match="unknown label rule 'P'"):
        msp_improv.read_corpus(corpus_root, "P")
    with pytest.raises(CorpusError, match="only audiovisual ratings"):
        msp_improv.read_corpus(corpus_root, "consensus", "voice")
