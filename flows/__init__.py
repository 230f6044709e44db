"""Flows: Prefect flows that compose pipeline functions, and the `aeinspect` CLI that runs them."""
