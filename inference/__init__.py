"""Using a finished run: prediction on new videos and scoring on the recorded test split. Both read
the run folder through training.run_folder."""
