"""Benchmarks: real load against the running stack (see docs/benchmarks.md)."""
