"""Shared test helpers (not collected by pytest): real servers, renderer runs, mesh generators and the
runner for the scripts in ``tests/scenarios/``. Test modules import these, never each other."""
