"""Benchmarks for kithara-hls (run as modules from the repo root)."""
