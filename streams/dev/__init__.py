"""Embedded dev stack shared by the demo, the tests and the benchmarks."""
