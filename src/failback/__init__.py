"""failback: roll an application's SQLite data back from a native provider to sql.js, safely and verifiably."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("failback")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
