"""Browser journeys on the README's own deployment (a package: its conftest must not shadow tests/integration's)."""
