"""Training AuxFormer and its baselines: config, loop, checkpoints and resume, distributed set-up,
and the run folder (the one owner of what training writes and what evaluation and prediction read)."""
