"""Benchmarks: programs that measure Hearth and print their figures.

They are not tests: nothing here decides pass or fail for the unit-test run.
Each benchmark builds its own data in a database it is explicitly given and
never touches a database that holds anything unless told to wipe it (--reset).
"""
