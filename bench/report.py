"""The benchmark's results and report: the aims and their verdicts (each met or missed, by how
much, stating only what was measured), ``summarise`` (the measured figures with their fits,
projections and aims), the markdown report section by section (``render_markdown``) and the
results files (``write_results``: bench/results/<date>-<host>.json and .md).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.fits import (
    PROJECTION_CORES,
    extraction_fits,
    fit_from_dict,
    largest,
    projections,
    training_fits,
    worker_counts,
)
from bench.runner import GPU_SAMPLE_MS

EXTRACTION_PARTS = ("decode", "convert", "audio", "detect", "crop", "embed", "audio_encoding", "write")
PART_NAMES = {"decode": "video decode", "convert": "pixel conversion", "audio": "audio read",
              "detect": "face detection", "crop": "crop", "embed": "embedding", "audio_encoding": "audio encoding",
              "write": "HDF5 write"}
# Parts the decode-only floor does too (it converts every frame, extraction only those it keeps);
# the others are what extraction adds.
FLOOR_PARTS = ("decode", "convert", "audio")
# Peak memory counts as flat with corpus size when the largest corpus's is within this of the smallest's.
MEMORY_GROWTH = 0.10


@dataclass(frozen=True)
class Aims:
    extraction_over_floor: float = 2.0  # full extraction time / decode-only time, on CPU
    memory_growth: float = MEMORY_GROWTH  # peak memory, largest corpus over smallest, minus 1
    data_wait_share: float = 0.10  # share of training step time spent waiting for data
    warm_prediction_real_time: float = 1.0  # warm latency / clip duration, on 2 CPU cores
    egemaps_over_logmel: float = 1.3  # extraction with eGeMAPS / with the log-mel, same clips and workers
    recording_real_time: float = 0.1  # make predict --segments speech of a long recording / its duration


AIMS = Aims()


def extraction_bound(record: dict, cpu_count: int) -> str:
    """What the time beyond the floor goes to: the two largest parts the floor does not do."""
    parts, frames = record["full"]["parts"], max(record["full"]["frames"], 1)
    total = sum(parts.values()) or 1.0
    extra = sorted((p for p in parts if p not in FLOOR_PARTS), key=lambda p: -parts[p])[:2]
    named = " and ".join(f"{PART_NAMES.get(p, p)} ({1000 * parts[p] / frames:.2f} ms/frame, "
                         f"{parts[p] / total:.0%} of process time)" for p in extra)
    decode = sum(parts.get(p, 0.0) for p in FLOOR_PARTS)
    text = (f"the largest parts the floor does not do: {named}; decoding itself is "
            f"{1000 * decode / frames:.2f} ms/frame ({decode / total:.0%}) in the full run")
    if record["workers"] >= cpu_count and record["full"].get("embed_in", "main") == "main":
        # The floor has no main-process work; extraction embeds in the main process beside the workers.
        text += (f"; the main process (embedding, log-mel, writing) shares the {cpu_count} cores with the "
                 f"{record['workers']} workers")
    return text


def start_up_and_rest(fits: dict, record: dict) -> str:
    """The ratio taken apart with the fits over the corpus sizes: each side's fixed start-up, and the
    rest of the largest corpus's time (what a corpus of thousands of clips is made of) as a ratio."""
    workers = record["workers"]
    full, floor = fit_from_dict(fits.get(f"full-w{workers}")), fit_from_dict(fits.get(f"floor-w{workers}"))
    if not full or not floor:
        return ""
    clips, frames = record["full"]["clips"], record["full"]["frames"]
    rest = full.seconds(clips, frames) - full.fixed
    floor_rest = floor.seconds(clips, frames) - floor.fixed
    if floor_rest <= 0:
        return ""
    return (f"; from the fits over the sizes, a fixed start-up of {full.fixed:.2f} s against the floor's "
            f"{floor.fixed:.2f} s, and the rest {rest / floor_rest:.2f}x the floor's")


def ratio_verdict(measured: float, aim: float) -> str:
    return f"met ({measured:.2f}x, aim at most {aim:.2f}x)" if measured <= aim else \
        f"missed by {measured / aim:.2f}x ({measured:.2f}x against at most {aim:.2f}x)"


def share_verdict(measured: float, aim: float) -> str:
    return f"met ({measured:.1%}, aim under {aim:.0%})" if measured < aim else \
        f"missed by {100 * (measured - aim):.1f} percentage points ({measured:.1%} against under {aim:.0%})"


def extraction_aims(results: dict, where: str) -> list[dict]:
    """One row per worker count, on the largest corpus of the count series."""
    rows = []
    for workers in worker_counts(results["config"]["workers"]):
        record = largest(results["extraction"], workers=workers)
        if not record:
            continue
        ratio = record["full"]["seconds"] / record["floor"]["seconds"]
        met = ratio <= AIMS.extraction_over_floor
        verdict = ratio_verdict(ratio, AIMS.extraction_over_floor) + rounds_note(record)
        if not met:
            verdict += "; " + extraction_bound(record, results["machine"]["cpu_count"])
        verdict += start_up_and_rest(results["fits"]["extraction"], record)
        rows.append({"aim": f"extraction at most {AIMS.extraction_over_floor:.1f}x the decode-only floor on CPU",
                     "where": f"{record['label']}, {workers} worker(s), {where}", "met": met, "verdict": verdict})
    return rows


def rounds_note(record: dict) -> str:
    """The ratio of each round (extraction over the floor run after it), when there were several."""
    rounds = record.get("rounds")
    if not rounds or len(rounds["full"]) < 2:
        return ""
    ratios = ", ".join(f"{full / floor:.2f}x" for full, floor in zip(rounds["full"], rounds["floor"]))
    return f"; medians of {len(rounds['full'])} rounds taken in turn (each round's ratio: {ratios})"


def rounds_sentence(results: dict) -> str:
    rounds = max((len(r["rounds"]["full"]) for r in results["extraction"] if r.get("rounds")), default=1)
    if rounds < 2:
        return ""
    return (f" Each extraction and its floor ran {rounds} times, one after the other in turn; a row gives the "
            "median run of each (every run's seconds are in the JSON).")


def memory_aim(results: dict, where: str) -> list[dict]:
    """Peak resident memory of the all-cores extraction, smallest against largest corpus of the count series."""
    workers = max(worker_counts(results["config"]["workers"]))
    records = sorted((r for r in results["extraction"] if r["series"] == "count" and r["workers"] == workers),
                     key=lambda r: r["full"]["clips"])
    if len(records) < 2:
        return []
    small, large = records[0]["full"], records[-1]["full"]
    growth = {name: large["peak_mb"][name] / max(small["peak_mb"][name], 1) - 1 for name in ("main", "largest_child")}
    met = max(growth.values()) <= AIMS.memory_growth
    verdict = (f"{'met' if met else 'missed'}: main process {small['peak_mb']['main']} MB at {small['clips']} clips, "
               f"{large['peak_mb']['main']} MB at {large['clips']} ({growth['main']:+.0%}); largest worker "
               f"{small['peak_mb']['largest_child']} MB, {large['peak_mb']['largest_child']} MB "
               f"({growth['largest_child']:+.0%}; aim: within {AIMS.memory_growth:.0%})")
    return [{"aim": "extraction's peak memory flat with corpus size",
             "where": f"{records[0]['label']} to {records[-1]['label']}, {workers} worker(s), {where}", "met": met,
             "verdict": verdict}]


def clip_length_memory_aim(results: dict, where: str) -> list[dict]:
    """The largest worker's peak on the long clip against its peak on the smallest corpus's short
    clips, with as many workers: each worker holds one clip at a time, so only its length could tell."""
    long = largest(results["extraction"], series="long")
    if not long:
        return []
    shorts = [r for r in results["extraction"] if r["series"] == "count" and r["workers"] == long["workers"]]
    if not shorts:
        return []
    short = min(shorts, key=lambda r: r["full"]["clips"])
    peaks = short["full"]["peak_mb"]["largest_child"], long["full"]["peak_mb"]["largest_child"]
    growth = peaks[1] / max(peaks[0], 1) - 1
    seconds = long["full"]["frames"] / 30
    met = growth <= AIMS.memory_growth
    verdict = (f"{'met' if met else 'missed'}: largest worker {peaks[0]} MB on {short['label']}'s clips of "
               f"{short['full']['frames'] / max(short['full']['clips'], 1) / 30:.1f} s, {peaks[1]} MB on one clip of "
               f"{duration(seconds)} ({growth:+.0%}; aim: within {AIMS.memory_growth:.0%}); the main process, "
               f"which computes a clip's log-mel whole, {short['full']['peak_mb']['main']} and "
               f"{long['full']['peak_mb']['main']} MB")
    return [{"aim": "extraction workers' peak memory flat with clip length",
             "where": f"{short['label']} against {long['label']} joined, {long['workers']} worker(s), {where}",
             "met": met, "verdict": verdict}]


def encoder_ratios(results: dict) -> dict[str, dict]:
    """Each audio encoder's extraction against the log-mel's: the ratio of the medians, and each round's."""
    records = {record["encoder"]: record for record in results.get("audio_encoders", [])}
    reference = records.get("logmel")
    if not reference:
        return {}
    return {name: {"median": record["full"]["seconds"] / reference["full"]["seconds"],
                   "rounds": [seconds / logmel for seconds, logmel in zip(record["rounds"], reference["rounds"])]}
            for name, record in records.items()}


def audio_encoder_aim(results: dict, where: str) -> list[dict]:
    ratios = encoder_ratios(results)
    if "egemaps" not in ratios:
        return []
    record = next(r for r in results["audio_encoders"] if r["encoder"] == "egemaps")
    ratio = ratios["egemaps"]
    met = ratio["median"] <= AIMS.egemaps_over_logmel
    verdict = ratio_verdict(ratio["median"], AIMS.egemaps_over_logmel)
    if len(ratio["rounds"]) > 1:
        verdict += (f"; medians of {len(ratio['rounds'])} rounds, the encoders in turn (each round's ratio: "
                    f"{', '.join(f'{r:.2f}x' for r in ratio['rounds'])})")
    return [{"aim": f"extraction with eGeMAPS at most {AIMS.egemaps_over_logmel:.1f}x the log-mel's",
             "where": f"{record['label']}, {record['workers']} worker(s), {where}", "met": met, "verdict": verdict}]


def training_aim(results: dict, where: str) -> list[dict]:
    if not results["training"]:
        return []
    training = max(results["training"], key=lambda r: r["training"]["train_clips"])["training"]
    wait = training["data_wait_share"]
    met = wait < AIMS.data_wait_share
    verdict = share_verdict(wait, AIMS.data_wait_share)
    if not met:
        verdict += f", with {results['config']['num_workers']} loader processes"
    verdict += f"; the training steps took the other {1 - wait:.1%} of the pass"
    return [{"aim": f"training data wait under {AIMS.data_wait_share:.0%} of step time",
             "where": f"{training['train_clips']} training clips, {where}", "met": met, "verdict": verdict}]


def prediction_aim(results: dict, where: str) -> list[dict]:
    prediction, machine = results["prediction"], results["machine"]
    if not prediction:
        return []
    real_time = prediction["warm"]["median"] / prediction["duration"]
    met = real_time < AIMS.warm_prediction_real_time
    verdict = (f"met ({real_time:.2f}x the clip's duration)" if met else
               f"missed by {real_time / AIMS.warm_prediction_real_time:.2f}x ({real_time:.2f}x the clip's "
               f"duration); the largest part is {_largest_part(prediction['warm']['parts'])}")
    if machine["cpu_count"] != PROJECTION_CORES or machine["device"] != "cpu":
        verdict += f" (measured on {where}, not 2 CPU cores)"
    return [{"aim": "warm prediction faster than real time on 2 CPU cores",
             "where": f"{prediction['clip']}, {prediction['duration']:.2f} s, {where}", "met": met,
             "verdict": verdict}]


def recording_aims(results: dict, where: str) -> list[dict]:
    """The long recording predicted by segments: its time against its duration, and its peak memory
    against the baseline recording's."""
    recordings = results.get("recordings")
    if not recordings:
        return []
    base, long = recordings["baseline"], recordings["long"]
    real_time = long["seconds"] / long["duration"]
    recording = f"{duration(long['duration'])} recording, {long['segments']} segments, {where}"
    growth = long["peak_mb"]["main"] / max(base["peak_mb"]["main"], 1) - 1
    memory_met = growth <= AIMS.memory_growth
    memory = (f"{'met' if memory_met else 'missed'}: {base['peak_mb']['main']} MB on {duration(base['duration'])}, "
              f"{long['peak_mb']['main']} MB on {duration(long['duration'])} ({growth:+.0%}; aim: within "
              f"{AIMS.memory_growth:.0%})")
    return [{"aim": f"a long recording predicted by segments in at most {AIMS.recording_real_time:.1f}x its duration",
             "where": recording, "met": real_time <= AIMS.recording_real_time,
             "verdict": ratio_verdict(real_time, AIMS.recording_real_time)},
            {"aim": "a long recording predicted by segments in flat memory", "where": recording, "met": memory_met,
             "verdict": memory}]


def gpu_aim(results: dict) -> list[dict]:
    gpu = results["gpu"]
    return [{"aim": "on GPU, the extraction workers keep the embedding step busy", "where": gpu["name"] or "no GPU",
             "met": None, "verdict": _gpu_verdict(gpu) if gpu["name"] else "not measured: no GPU run"}]


def aims(results: dict) -> list[dict]:
    machine = results["machine"]
    where = f"{machine['cpu_count']} cores, {machine['device']}"
    return (extraction_aims(results, where) + audio_encoder_aim(results, where) + memory_aim(results, where)
            + clip_length_memory_aim(results, where)
            + training_aim(results, where)
            + prediction_aim(results, where) + recording_aims(results, where) + gpu_aim(results))


def _largest_part(parts: dict) -> str:
    name = max(parts, key=parts.get)
    return f"{name} ({parts[name]:.2f} s of the call)"


def _gpu_verdict(gpu: dict) -> str:
    during = gpu.get("extraction_utilisation")
    if not during:
        return gpu.get("extraction_utilisation_note") or "utilisation not measured: nvidia-smi gave no samples"
    return (f"reported: GPU busy {during['mean']:.0f}% of the time on average (max {during['max']:.0f}%) "
            "during extraction")


def gpu_summary(raw: dict, gpu_name: str | None) -> dict:
    extraction = largest(raw["extraction"], workers=max(r["workers"] for r in raw["extraction"])) \
        if raw["extraction"] else None
    training = raw["training"][-1]["training"] if raw["training"] else None
    return {"name": gpu_name,
            "extraction_utilisation": extraction["full"]["gpu_utilisation"] if extraction else None,
            "extraction_utilisation_note": extraction["full"].get("gpu_utilisation_note") if extraction else None,
            "training_utilisation": training["gpu_utilisation"] if training else None}


def summarise(raw: dict, machine: dict, config: dict) -> dict:
    """The results: the measured figures, the fits, the projections and the aims."""
    results = {"date": machine["date"], "machine": machine, "config": config, **raw,
               "gpu": gpu_summary(raw, machine["gpu"])}
    results["fits"] = {"extraction": extraction_fits(raw["extraction"]), "training": training_fits(raw["training"])}
    results["projection"] = projections(results)
    results["aims"] = aims(results)
    return results


def table(header: Sequence[str], rows: Sequence[Sequence], text_columns: int = 1) -> list[str]:
    """A markdown table; the first ``text_columns`` columns left-aligned, the figures right-aligned."""
    text_columns = min(text_columns, len(header))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * text_columns + "---:|" * (len(header) - text_columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _mb(peak: dict) -> str:
    return f"{peak['main']} / {peak['largest_child']}"


def _util(summary: dict | None) -> str:
    return f"{summary['mean']:.0f}% (max {summary['max']:.0f}%)" if summary else "-"


def extraction_section(results: dict) -> list[str]:
    rows = []
    for r in results["extraction"]:
        full, floor = r["full"], r["floor"]
        unconverted = (f"{full['seconds'] / floor['unconverted_seconds']:.2f}x" if floor.get("unconverted_seconds")
                       else "-")
        rows.append([f"{r['label']} ({r['series']})", r["workers"], full["clips"], full["frames"],
                     full.get("steps", "-"), f"{full['frames'] / max(full['clips'], 1) / 30:.2f}",
                     f"{full['seconds']:.1f}", f"{full['clips'] / full['seconds']:.2f}",
                     f"{full['frames'] / full['seconds']:.0f}", f"{floor['frames'] / floor['seconds']:.0f}",
                     f"{full['seconds'] / floor['seconds']:.2f}x", unconverted,
                     _mb(full["peak_mb"]), _mb(floor["peak_mb"]), _util(full["gpu_utilisation"])])
    first = results["extraction"][0]["full"] if results["extraction"] else {}
    settings = (f" Extraction with the default options: faces followed and embedded at `--face-rate "
                f"{first['face_rate']:g}` (every round(fps / rate)-th frame: the face steps column), embedded in the "
                f"{first['embed_in']} process(es)."
                if "face_rate" in first else "")
    lines = ["## 1. Extraction", "",
             "Full extraction (`pipeline.features.extract`) against the decode-only floor (the same clips, the "
             "same worker count, `pipeline.decode_floor.decode_clip`, every frame decoded and converted to a BGR "
             "array). Ratio = full seconds / floor seconds "
             f"(aim: at most {AIMS.extraction_over_floor:.1f}x on CPU); the column after it divides by a second "
             "floor, decoding every frame without converting it, which extraction cannot beat either (it converts "
             "only the frames it keeps). Peak memory is resident MB of the main "
             f"process / its largest worker; mean clip length assumes 30 fps.{settings}{rounds_sentence(results)}",
             ""]
    lines += table(["corpus", "workers", "clips", "frames", "face steps", "mean clip (s)", "seconds", "clips/s",
                    "frames/s", "floor frames/s", "full/floor", "full/unconverted floor", "peak MB full",
                    "peak MB floor", "GPU busy"], rows)
    boxes = results.get("boxes")
    if boxes:
        lines += [f"Face boxes (`python -m bench.box_agreement`): {box_sentence(boxes)}.", ""]
    for workers in worker_counts(results["config"]["workers"]):
        record = largest(results["extraction"], workers=workers)
        if not record:
            continue
        parts, frames = record["full"]["parts"], max(record["full"]["frames"], 1)
        total = sum(parts.values()) or 1.0
        lines += [f"Time by part, {record['label']} with {workers} worker(s) (seconds summed over processes; "
                  f"the run took {record['full']['seconds']:.1f} s of wall time):", ""]
        lines += table(["part", "seconds", "share", "ms per frame"],
                       [[PART_NAMES.get(p, p), f"{parts[p]:.1f}", f"{parts[p] / total:.0%}",
                         f"{1000 * parts[p] / frames:.2f}"] for p in EXTRACTION_PARTS if p in parts])
    return lines


def audio_encoder_section(results: dict) -> list[str]:
    records, ratios = results.get("audio_encoders", []), encoder_ratios(results)
    if not records:
        return []
    rows = [[r["encoder"], r["workers"], r["full"]["clips"], f"{r['full']['seconds']:.1f}",
             f"{ratios[r['encoder']]['median']:.2f}x", ", ".join(f"{x:.2f}x" for x in ratios[r["encoder"]]["rounds"]),
             f"{r['full']['parts'].get('audio_encoding', 0.0):.1f}", _mb(r["full"]["peak_mb"])] for r in records]
    lines = ["## Audio encoders", "",
             f"The {records[0]['label']} corpus extracted with each audio encoder, the same clips and workers, the "
             "encoders in turn each round; the median run of each against the log-mel's (aim: eGeMAPS at most "
             f"{AIMS.egemaps_over_logmel:.1f}x). wav2vec2 is a tiny model of the real architecture with random "
             "weights (extract.tiny_wav2vec2), so its row is the plumbing's cost, not a real checkpoint's. Audio "
             "encoding: seconds summed over processes.", ""]
    return lines + table(["encoder", "workers", "clips", "seconds", "x log-mel", "each round", "audio encoding s",
                          "peak MB"], rows)


def box_sentence(boxes: dict) -> str:
    every, between = boxes["all"], boxes["between_detections"]
    if not every["frames"]:
        return f"no kept frame of the {boxes['clips']} clips measured has a box in both"
    return (f"against detection on every frame, the boxes extraction followed ({boxes['face_rate']:g} a second, "
            f"detection every {boxes['detect_every']} kept frames, interpolation between) on {boxes['clips']} clips "
            f"({boxes['kept_frames']} kept frames) have a mean IoU of {every['mean']:.3f} (5th percentile "
            f"{every['p5']:.3f}), {between['mean']:.3f} on the {between['frames']} frames between detections; one "
            f"has a face where the other has none on {boxes['validity_disagreement']:.1%} of the kept frames")


def training_section(results: dict) -> list[str]:
    rows, eval_rows = [], []
    for r in results["training"]:
        t, e = r["training"], r["evaluation"]
        rows.append([r["label"], t["train_clips"], t["dev_clips"], f"{t['epoch_seconds']:.1f}",
                     f"{t['train_seconds']:.1f}", f"{t['train_clips_per_second']:.2f}", f"{t['data_wait_share']:.1%}",
                     _mb(t["peak_mb"]), _gpu_mb(t), _util(t["gpu_utilisation"])])
        eval_rows.append([r["label"], e["clips"], e["conditions"], f"{e['seconds']:.1f}",
                          f"{e['clips_per_second']:.2f}", _mb(e["peak_mb"]), _gpu_mb(e)])
    config = results["config"]
    lines = ["## 2. Training and evaluation", "",
             f"`pipeline.train.run`, {config['epochs']} epoch(s), batch {config['batch_size']}, audio pool "
             f"{config['audio_pool'] or 'from the frame rate'}, video pool "
             f"{config['video_pool'] or 'from the frame rate'}, "
             f"{config['num_workers']} loader processes; "
             "the last epoch's figures from metrics.csv. An epoch is training plus scoring the development split. "
             f"Data wait = share of the training pass spent waiting for the next batch (aim: under "
             f"{AIMS.data_wait_share:.0%}). Peak MB: main process / largest loader process.", ""]
    lines += table(["corpus", "train clips", "dev clips", "s per epoch", "s training", "train clips/s",
                    "data wait", "peak MB", "peak GPU MB", "GPU busy"], rows)
    lines += ["Evaluation (`pipeline.evaluate.run` as a whole: each condition scored, report and confusion "
              "plot written):", ""]
    lines += table(["corpus", "test clips", "conditions", "seconds", "clips/s", "peak MB", "peak GPU MB"], eval_rows)
    return lines


def _gpu_mb(figures: dict) -> str:
    return "-" if figures.get("gpu_peak_mb") is None else f"{figures['gpu_peak_mb']:.0f}"


def prediction_section(results: dict) -> list[str]:
    p = results["prediction"]
    if not p:
        return []
    warm, clip_seconds = p["warm"], p["duration"]
    cold = ", ".join(f"{s:.1f}" for s in p["cold_seconds"])
    lines = ["## 3. Prediction", "",
             f"Clip `{p['clip']}`, {clip_seconds:.2f} s. Cold: `python -m pipeline.predict` in a new process "
             f"(start, model load, prediction, output files). Warm: `Predictor.predict` with the model loaded, "
             f"after one untimed call (aim: faster than real time, under 1.0x the clip's duration).", ""]
    lines += table(["latency", "seconds", "x clip duration", "runs"], [
        ["cold (median)", f"{p['cold_median']:.2f}", f"{p['cold_median'] / clip_seconds:.2f}x", cold],
        ["warm (median)", f"{warm['median']:.3f}", f"{warm['median'] / clip_seconds:.2f}x",
         ", ".join(f"{s:.3f}" for s in warm["latencies"])]])
    lines += [f"Model load (in the warm process): {warm['load_seconds']:.2f} s; peak memory "
              f"{warm['peak_mb']['main']} MB. A warm call's time by part:", ""]
    lines += table(["part", "seconds", "share of the median call"],
                   [[name, f"{s:.3f}", f"{s / warm['median']:.0%}"] for name, s in warm["parts"].items()])
    return lines


def _fit_row(name: str, fit: dict | None) -> list:
    if not fit:
        return [name, "too few sizes", "", "", "", ""]
    fixed = f"{fit['fixed']:.2f}" if "fixed" in fit["terms"] else "- (folded in)"
    per_clip = f"{1000 * fit['per_clip']:.1f}" if "clip" in fit["terms"] else "-"
    per_frame = f"{1000 * fit['per_frame']:.2f}" if "frame" in fit["terms"] else "-"
    return [name, fixed, per_clip, per_frame, fit["points"], f"{fit['max_relative_residual']:.0%}"]


def scaling_section(results: dict) -> list[str]:
    lines = ["## 4. Scaling and projection", "",
             "How the figures grow: the tables above list every size; the `count` series grows the number of "
             "demo clips (actors), the `length` series joins the same demo clips into fewer, longer ones "
             "(the same frames). Fits by non-negative least squares: seconds = fixed + per clip x clips + "
             "per frame x frames. Per clip and per frame are told apart only when the clip length varies; "
             "training and evaluation are fitted against their clips, at the demo's clip length, with no fixed "
             "part when their clip count did not vary (the development and test splits are one actor at every "
             "size up to 9 actors), which makes the per-clip cost an upper bound. Max residual: the largest "
             "misfit of a measured point, a measure of the noise.", ""]
    rows = [_fit_row(f"extraction, {name.split('-w')[1]} worker(s)" if name.startswith("full") else
                     f"decode floor, {name.split('-w')[1]} worker(s)", fit)
            for name, fit in results["fits"]["extraction"].items()]
    rows += [_fit_row({"train": "training pass", "development": "development scoring",
                       "evaluation": "evaluation"}[name], fit) for name, fit in results["fits"]["training"].items()]
    lines += table(["stage", "fixed s", "ms per clip", "ms per frame", "points", "max residual"], rows)
    projection = results["projection"]
    lines += [f"Projection to the full corpora, from the fits of the all-cores runs. The 2-core column scales "
              f"this machine's figures linearly by its cores / 2 (x{projection['cpu_scale']:.2f}); the GPU column "
              f"comes only from a `--device cuda` run.", ""]
    rows = []
    for corpus in projection["corpora"]:
        for stage, name in (("extraction", "extraction (fit)"),
                            ("extraction_at_rate", "extraction (at the largest run's frames/s)"),
                            ("decode_floor", "decode-only floor (fit)"),
                            ("training_epoch", "one training epoch"), ("evaluation", "evaluation (test split)")):
            cpu = corpus["cpu_2_cores"][stage] if corpus["cpu_2_cores"] else None
            gpu = corpus["gpu_machine"][stage] if corpus["gpu_machine"] else None
            rows.append([corpus["name"], name, duration(cpu) if corpus["cpu_2_cores"] else "not a CPU run",
                         duration(gpu) if corpus["gpu_machine"] else "no GPU run"])
    lines += table(["corpus", "stage", "2 CPU cores", "one GPU machine"], rows, text_columns=2)
    for corpus in projection["corpora"]:
        lines.append(f"- {corpus['name']}: {corpus['clips']:,} clips, {corpus['frames']:,} frames "
                     f"({corpus['frames_source']}); splits {corpus['split_source']}.")
    lines += ["- Training and evaluation are projected per clip at the demo's clip length; longer clips "
              "cost more (attention grows with the square of the steps).", ""]
    return lines


def gpu_section(results: dict) -> list[str]:
    gpu = results["gpu"]
    if not gpu["name"]:
        return ["## 5. GPU", "", "No GPU run: run `make bench ARGS=\"--device cuda\"` on a machine with one.", ""]
    return ["## 5. GPU", "", f"{gpu['name']}, {results['date']}. Utilisation sampled by nvidia-smi about every "
            f"{GPU_SAMPLE_MS} ms.", ""] + table(["stage", "GPU busy (mean, max)"], [
        ["extraction (largest, all workers)", _util(gpu["extraction_utilisation"])],
        ["training (largest size)", _util(gpu["training_utilisation"])]])


def recordings_section(results: dict) -> list[str]:
    recordings = results.get("recordings")
    if not recordings:
        return []
    lines = ["## 6. Long recordings", "",
             "`python -m pipeline.predict --segments speech` in a new process (start, model load, voice activity "
             "detection, every segment, output files and timeline picture), on recordings of demo clips in turn "
             "with a second's pause (silence, the next clip's first frame held) before each "
             f"(aim: at most {AIMS.recording_real_time:.1f}x the recording's duration, peak memory within "
             f"{AIMS.memory_growth:.0%} of the shorter one's).", ""]
    lines += table(["recording", "duration", "speech", "segments", "seconds", "x duration", "peak MB (main)"], [
        [name, duration(r["duration"]), duration(r["speech_seconds"]), r["segments"], f"{r['seconds']:.1f}",
         f"{r['seconds'] / r['duration']:.3f}x", r["peak_mb"]["main"]] for name, r in recordings.items()])
    return lines


def render_markdown(results: dict) -> str:
    machine = results["machine"]
    rerun = f"make bench ARGS=\"{results['command']}\"" if results["command"] else "make bench"
    busy = (": other work shared the machine, so the figures are slower and noisier than on a quiet one"
            if max(machine["load_before"], machine["load_after"]) > machine["cpu_count"] else "")
    lines = [f"# Benchmark, {machine['hostname']}, {results['date']}", "",
             f"{machine['cpu_count']} CPU cores ({machine['cpu_model']}), {machine['ram_gb']:.0f} GB RAM, "
             f"torch {machine['torch']} ({machine.get('torch_threads', '?')} threads), device {machine['device']}"
             f"{', ' + machine['gpu'] if machine['gpu'] else ''}; commit {machine['commit'] or 'unknown'}. "
             f"Load average {machine['load_before']:.1f} before, {machine['load_after']:.1f} after{busy}. "
             f"The benchmark took {duration(results['wall_seconds'])}.",
             "", f"Run with `{rerun}`.", "", "## Aims", ""]
    lines += table(["aim", "measured on", "verdict"],
                   [[a["aim"], a["where"], a["verdict"]] for a in results["aims"]], text_columns=3)
    for section in (extraction_section, audio_encoder_section, training_section, prediction_section,
                    scaling_section, gpu_section, recordings_section):
        lines += section(results)
    return "\n".join(lines).rstrip() + "\n"


def results_name(machine: dict) -> str:
    suffix = "-cuda" if machine["device"] == "cuda" else ""
    return f"{machine['date']}-{machine['hostname']}{suffix}"


def write_results(results: dict, results_dir: Path) -> tuple[Path, Path, str]:
    results_dir.mkdir(parents=True, exist_ok=True)
    name = results_name(results["machine"])
    markdown = render_markdown(results)
    json_path, md_path = results_dir / f"{name}.json", results_dir / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path, markdown
