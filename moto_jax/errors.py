"""Errors in what the user gave (config, data, workdir), as opposed to bugs.

`launch.main` prints a `UserError` as one `FATAL <Error>: <message>` line and exits with status 1;
any other exception keeps its traceback. Each message names the file, field or value at fault and
what to do about it.
"""


class UserError(Exception):
  """Base of the errors about the user's input; the message alone says what is wrong."""


class DatasetError(ValueError, UserError):
  """An offline dataset that does not fit the run (other environment settings, missing files)."""


class WorkdirError(UserError):
  """A workdir this run cannot use: in use by another process, or changed by hand since its checkpoint."""
