pytest_plugins = ["fleet_tools.testing"]
