pytest_plugins = ["fleet_shared.testing"]
