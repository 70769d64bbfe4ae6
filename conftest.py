"""Root conftest: stays thin. The fixtures live in fixtures/plugin.py (loaded with -p in pyproject)."""
