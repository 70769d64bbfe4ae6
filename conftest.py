"""Root conftest: stays thin. It registers plugins; fixtures live in fixtures/, evidence in reports/."""

pytest_plugins = ["reports.plugin"]
