"""Registration of the docker components (nothing heavy imported here)."""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"
