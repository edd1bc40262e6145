"""Day-2 suites: a package, so its shared deployment (conftest.full_stack) is torn down when the package ends."""
