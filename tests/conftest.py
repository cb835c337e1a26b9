pytest_plugins = ["taskq.testing"]
