"""Exceptions that reach people.

Everything a user can cause (a broken ``stacks.toml``, an unknown flavor, a bad
option) raises a :class:`FlowymlError`. The CLI prints its message as one line
and exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FlowymlError(Exception):
    """A problem the user can fix; the message says what, where and how."""


class PipelineDefinitionError(FlowymlError):
    """The pipeline's steps do not form a valid DAG."""


class DefinitionError(FlowymlError, ValueError, TypeError):
    """A step, resource or container setting that cannot work, refused where it is written.

    Raised by ``@step``, ``ResourceConfig`` and ``DockerConfig`` when they are
    made, not when the run reaches them. It is also a ``ValueError`` and a
    ``TypeError`` because those are what such mistakes raised before; code
    that catches them keeps working.
    """


class ConfigError(FlowymlError):
    """A ``stacks.toml`` file or a component's options are wrong."""


class PluginError(FlowymlError):
    """A plugin is missing, blocked, broken or conflicts with another."""


class IntegrityError(FlowymlError):
    """Stored bytes do not match what was written, or cannot be trusted."""


class StepTimeoutError(TimeoutError):
    """A step ran past its ``timeout``."""


class StopExecution(Exception):
    """Raised inside a step to stop the run on purpose (not retried)."""


class RemoteStepError(Exception):
    """A step's failure that happened in another process, carried back as text.

    An executor that calls step functions elsewhere raises it where the
    original exception cannot travel (its traceback never does): ``repr()``
    is the original's and ``description`` its repr and the traceback of the
    user's frames, so the step's error, logs and retries read exactly as if it
    had been raised here (see ``flowyml_core.execution.describe_error``).
    """

    def __init__(self, description: str, original_repr: str) -> None:
        super().__init__(description)
        self.description = description
        self.original_repr = original_repr

    def __repr__(self) -> str:
        return self.original_repr

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.description, self.original_repr))


class UnfingerprintableError(FlowymlError):
    """A value whose content cannot be digested the same way in every process.

    A step whose key would need it is run without the cache (see
    ``docs/reference/executor.md``, "Cache keys").
    """

    def __init__(self, type_name: str, reason: str, where: str | None = None) -> None:
        what = f"{where} is a {type_name}, which" if where else f"a {type_name}"
        super().__init__(f"{what} cannot be fingerprinted ({reason})")
        self.type_name = type_name
        self.reason = reason
        self.where = where


class OutputContractError(FlowymlError):
    """A step's return value does not match the outputs it declares."""
