"""The dataflow engine (knows nothing of the config front end)."""
