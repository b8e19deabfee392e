"""The errors every layer may raise. At the bottom of the import graph, so that an env, an algorithm or the
trainer can report a user's mistake without importing the config package above them."""


class ConfigError(ValueError):
    """A user error in the configuration: printed as one paragraph, exit code 2, no traceback."""
