"""Incremental parsers: each turns new lines (or bytes) of one file format into metric points."""
