"""Experiments over many runs: cross-validation over partitions and seeds, and its summary with
intervals and paired differences."""
