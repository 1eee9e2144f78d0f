"""Reproducible benchmarks of ReviewPulse (figures, never timed assertions)."""
