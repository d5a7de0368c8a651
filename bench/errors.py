"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class BenchError(Exception):
    """Bad input or configuration, reported without a traceback."""


class DataError(BenchError):
    """A data file is missing, malformed or inconsistent."""

    def __init__(self, path: object, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
