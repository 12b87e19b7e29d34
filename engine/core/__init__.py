"""The core: events, the one reducer (state), bounded series, typed parameters, config.toml,
errors and atomic writes. Imports nothing of urbanrun outside this package."""
