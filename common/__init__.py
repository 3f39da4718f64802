"""What every layer shares: the project error, atomic writes, the path rule, typed stage configs,
the stage wrapper and device resolution. Imports nothing of the project."""
