"""Prefect flows over the DVC stages, run from the project root (`tunepipe run`, `tunepipe search`)."""
