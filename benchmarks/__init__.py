"""Benchmarks: scripts that print JSON figures, each with a ceiling measured in the same run."""
