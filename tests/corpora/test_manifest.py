"""The manifest's files: the same columns for every corpus, a corpus's own fields in ``extra``."""
from __future__ import annotations

import pytest

from corpora.manifest import MANIFEST_FILE, ClipRecord, CorpusError, ManifestMeta, load_manifest, write_manifest

META = ManifestMeta(dataset="demo", corpus="CREMA-D", corpus_root="data/raw/demo", classes=("sad", "happy"),
                    label_rule="intended", ratings="", partition=1, partition_file="", split_rule="by speaker")


def test_extra_fields_come_back_as_written(tmp_path):
    clips = [ClipRecord("1001_IEO_SAD_HI", audio_path="a.wav", speaker="1001", label="sad", split="train",
                        extra={"sentence": "IEO", "level": "HI", "note": "ünïcode, \"quoted\""}),
             ClipRecord("x", label="happy", soft_label=(0.25, 0.75))]
    write_manifest(tmp_path, META, clips, [])
    assert load_manifest(tmp_path).clips == clips


def test_an_extra_that_is_no_json_object_is_refused(tmp_path):
    write_manifest(tmp_path, META, [ClipRecord("x", extra={"level": "HI"})], [])
    path = tmp_path / MANIFEST_FILE
    path.write_text(path.read_text().replace('"{""level"": ""HI""}"', '"[1, 2]"'))
    with pytest.raises(CorpusError, match=r"manifest.csv line 2: extra '\[1, 2\]' is not a JSON object"):
        load_manifest(tmp_path)
