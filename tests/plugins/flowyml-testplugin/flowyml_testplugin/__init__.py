"""A third-party flowyml plugin written only against the public plugin API.

It exists for the core's tests: it is installed into the test environment so
that plugin discovery goes through real entry points, and its executor
implements nothing but ``execute_step`` to prove the default pipeline walk
works for third-party executors.
"""
