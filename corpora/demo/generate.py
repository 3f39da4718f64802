"""Generate the demo corpus: a miniature CREMA-D with drawn faces and synthetic voices.

Writes, under the output folder, exactly CREMA-D's layout and formats (see corpora.crema_d):
AudioWAV/*.wav, VideoFlash/*.flv, processedResults/{summaryTable,tabulatedVotes}.csv,
VideoDemographics.csv and SentenceFilenames.csv, plus demo_generation.yaml (the config that made
it) and a .done stamp once complete. With ``--layout ravdess`` (to data/raw/demo-ravdess by
default) the same clips in RAVDESS's layout instead (corpora.demo.layouts): Actor_NN/ folders of
full audio-video .mp4 and audio-only .wav files under RAVDESS names, and no vote tables.

Every clip is drawn from the seed and its own id alone, so the output does not depend on the
number of workers or on which clips an interrupted run had already written.
"""
from __future__ import annotations

import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from common.config import option, to_yaml
from common.processes import process_pool
from corpora import crema_d
from corpora.crema_d import ClipName, recorded_clips
from corpora.demo import layouts, media
from corpora.demo.actors import Actor, make_actors
from corpora.demo.face import FaceRenderer, noise_bank
from corpora.demo.timeline import ClipTimeline, plan_clip
from corpora.demo.voice import synthesize
from corpora.demo.votes import RatedClip, write_vote_tables
from corpora.manifest import CorpusError

# Bump when a change to the generator changes what it writes, so old corpora are regenerated.
GENERATOR_VERSION = 2
CONFIG_FILE = "demo_generation.yaml"
DONE_FILE = ".done"


@dataclass
class DemoConfig:
    out_dir: Path = option(layouts.DEFAULT_DIRS[layouts.CREMA], "folder the corpus is written to (left at this "
                                                                "default: data/raw/demo-ravdess for --layout ravdess)")
    layout: str = option(layouts.CREMA, f"file layout: {' or '.join(layouts.LAYOUTS)} (RAVDESS's names and MP4)")
    actors: int = option(10, "number of actors, alternately male and female")
    sentences: int = option(12, "sentences per actor, taken in CREMA-D's order (1-12)")
    seed: int = option(0, "random seed; the same seed gives the same corpus")
    workers: int = option(os.cpu_count() or 1, "parallel worker processes")
    force: bool = option(False, "regenerate even when a finished corpus with this config exists")

    def __post_init__(self) -> None:
        if self.layout in layouts.LAYOUTS and self.out_dir == layouts.DEFAULT_DIRS[layouts.CREMA]:
            self.out_dir = layouts.DEFAULT_DIRS[self.layout]

    def validate(self) -> None:
        if self.layout not in layouts.LAYOUTS:
            raise CorpusError(f"--layout must be one of {', '.join(layouts.LAYOUTS)}, got {self.layout!r}")
        most_actors = layouts.MAX_ACTORS[self.layout]
        if self.actors < 1 or (most_actors and self.actors > most_actors):
            raise CorpusError(f"--actors must be between 1 and {most_actors or 'any number'} for the {self.layout} "
                              f"layout, got {self.actors}")
        most_sentences = layouts.MAX_SENTENCES[self.layout]
        if not 1 <= self.sentences <= most_sentences:
            raise CorpusError(f"--sentences must be between 1 and {most_sentences} for the {self.layout} layout, "
                              f"got {self.sentences}")
        if self.workers < 1:
            raise CorpusError(f"--workers must be at least 1, got {self.workers}")

    def identity(self) -> dict:
        """What determines the corpus's content (not where or how fast it is written)."""
        identity = {"generator_version": GENERATOR_VERSION, "actors": self.actors,
                    "sentences": self.sentences, "seed": self.seed}
        # CREMA-D's layout is left unnamed, so that corpora generated before there were layouts stay finished.
        return identity if self.layout == layouts.CREMA else {**identity, "layout": self.layout}


@dataclass(frozen=True)
class GenerationReport:
    clips: int
    written: int  # clips written by this run (the others existed already)
    audio_seconds: float
    elapsed_seconds: float
    skipped: bool  # the finished corpus existed and nothing was done


def generate(config: DemoConfig) -> GenerationReport:
    config.validate()
    started = time.monotonic()
    out = config.out_dir
    actors = make_actors(config.actors, config.seed)
    sentences = tuple(crema_d.SENTENCES)[: config.sentences]
    clips = [clip for actor in actors for clip in recorded_clips(actor.actor_id, sentences)]
    if _is_finished(out, config) and not config.force:
        return GenerationReport(len(clips), 0, 0.0, time.monotonic() - started, skipped=True)
    _prepare_folder(out, config, [actor.actor_id for actor in actors])
    pending = [clip for clip in clips if not _clip_exists(out, clip, config.layout)]
    durations = _render_all(pending, actors, config)
    if config.layout == layouts.CREMA:
        _write_crema_tables(out, actors, clips, config.seed)
    (out / DONE_FILE).write_text(yaml.safe_dump(config.identity()))
    return GenerationReport(len(clips), len(pending), sum(durations), time.monotonic() - started, skipped=False)


def _is_finished(out: Path, config: DemoConfig) -> bool:
    done = out / DONE_FILE
    return done.exists() and yaml.safe_load(done.read_text()) == config.identity()


def _write_crema_tables(out: Path, actors: list[Actor], clips: list[ClipName], seed: int) -> None:
    _write_metadata(out, actors, clips)
    by_id = {actor.actor_id: actor for actor in actors}
    timelines = {clip: _timeline(clip, by_id[clip.actor], seed) for clip in clips}
    rated = [RatedClip(c.id, c.emotion, timelines[c].face_intensity, timelines[c].voice_intensity) for c in clips]
    write_vote_tables(rated, out / crema_d.RESULTS_DIR, seed)


def _prepare_folder(out: Path, config: DemoConfig, actor_ids: list[int]) -> None:
    """Resume a run of the same config; otherwise start from an empty folder we own."""
    saved = out / CONFIG_FILE
    if out.exists() and any(out.iterdir()):
        if not saved.exists():
            raise CorpusError(f"{out} is not empty and was not written by the demo generator; "
                                  "choose another --out-dir or empty it")
        same = yaml.safe_load(saved.read_text()).get("identity") == config.identity()
        if config.force or not same:
            shutil.rmtree(out)
    for folder in layouts.media_folders(out, actor_ids, config.layout):
        folder.mkdir(parents=True, exist_ok=True)
        media.remove_partial_files(folder)
    saved.write_text(yaml.safe_dump({"identity": config.identity()}, sort_keys=False) + to_yaml(config))


def _write_metadata(out: Path, actors: list[Actor], clips: list[ClipName]) -> None:
    lines = ['"ActorID","Age","Sex","Race","Ethnicity"']
    lines += [f'{a.actor_id},{a.age},"{a.sex}","{a.race}","{a.ethnicity}"' for a in actors]
    (out / crema_d.DEMOGRAPHICS).write_text("\n".join(lines) + "\n")
    lines = ['"Stimulus_Number","Filename"'] + [f'{i},"{c.id}"' for i, c in enumerate(clips, start=1)]
    (out / crema_d.SENTENCE_FILENAMES).write_text("\n".join(lines) + "\n")


def _clip_exists(out: Path, clip: ClipName, layout: str) -> bool:
    return layouts.audio_path(out, clip, layout).exists() and layouts.video_path(out, clip, layout).exists()


def _clip_rng(seed: int, clip: ClipName, stream: int) -> np.random.Generator:
    """Independent random streams per clip: 0 timeline, 1 voice, 2 face."""
    return np.random.default_rng([seed, zlib.crc32(clip.id.encode()), stream])


def _timeline(clip: ClipName, actor: Actor, seed: int) -> ClipTimeline:
    return plan_clip(clip, actor, _clip_rng(seed, clip, 0))


# Worker state, set once per process by _init_worker.
_worker: dict = {}


def _init_worker(actors: list[Actor], out: Path, seed: int, layout: str) -> None:
    import cv2

    cv2.setNumThreads(1)
    bank = noise_bank(seed)
    _worker.update(out=out, seed=seed, layout=layout, actors={a.actor_id: a for a in actors},
                   renderers={a.actor_id: FaceRenderer(a, bank) for a in actors})


def _render_clip(clip: ClipName) -> float:
    """Write one clip's WAV and FLV; returns its duration in seconds."""
    actor = _worker["actors"][clip.actor]
    seed, out, layout = _worker["seed"], _worker["out"], _worker["layout"]
    timeline = _timeline(clip, actor, seed)
    samples = synthesize(clip, actor, timeline, _clip_rng(seed, clip, 1))
    frames = _worker["renderers"][clip.actor].frames(clip, timeline, _clip_rng(seed, clip, 2))
    write_video = media.write_mp4 if layout == layouts.RAVDESS else media.write_flv
    write_video(layouts.video_path(out, clip, layout), frames, samples)
    media.write_wav(layouts.audio_path(out, clip, layout), samples)
    return timeline.duration


def _render_all(clips: list[ClipName], actors: list[Actor], config: DemoConfig) -> list[float]:
    progress = tqdm(total=len(clips), unit="clip", desc="demo corpus", disable=not clips)
    durations = []
    if config.workers == 1:
        _init_worker(actors, config.out_dir, config.seed, config.layout)
        for clip in clips:
            durations.append(_render_clip(clip))
            progress.update()
    else:
        with process_pool(config.workers, _init_worker, (actors, config.out_dir, config.seed, config.layout)) as pool:
            for duration in pool.map(_render_clip, clips, chunksize=4):
                durations.append(duration)
                progress.update()
    progress.close()
    return durations
