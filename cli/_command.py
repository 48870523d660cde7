"""The one error path of every command, and the click settings every command shares.

A user's mistake (a bad value a config rejects, a missing file, unreadable shards, a stopped shard job …)
becomes ONE line, ``Error: <first line of the message>``, on stderr and exit status 1 (75 for a shard job stopped
by its environment: rerun to resume). Values click itself rejects (a wrong type, a value outside ``choices``
or a range) keep click's usage error and exit status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import click

#: Exit status of a job stopped by its environment (disk full, out of memory, …): rerun to resume (EX_TEMPFAIL).
EXIT_RETRY = 75
#: Settings of every command: -h as well as --help, and a help text that uses a wide terminal.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 120}


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that describe a user's mistake in one line (imported only when something went wrong)."""
    from avsa_data.labels.base import LabelError
    from avsa_data.layouts import LayoutError
    from avsa_data.shards import ShardJobError

    # ValueError covers the configs' __post_init__ / validate checks and the project's one-line error types
    # derived from it (StorageError, ShardFormatError, CheckpointError, EventLabelError, MemberError …).
    return (ValueError, FileNotFoundError, ShardJobError, LayoutError, LabelError)


def exit_status(e: Exception) -> int:
    from avsa_data.shards import JobStopped

    return EXIT_RETRY if isinstance(e, JobStopped) else 1


class Command(click.Command):
    """A click command whose user errors (:func:`user_error_types`, plus ``user_errors``) end it with one line."""

    def __init__(self, *args, user_errors: tuple[type[Exception], ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.user_errors = tuple(user_errors)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as e:
            if not isinstance(e, (*user_error_types(), *self.user_errors)):
                raise  # a bug: keep the traceback
            lines = str(e).strip().splitlines()
            err = click.ClickException(lines[0] if lines else type(e).__name__)
            err.exit_code = exit_status(e)
            raise err from None


def command(name: str | None = None, *, show_default: bool = True, **kwargs):
    """``click.command`` with the shared :data:`CONTEXT`, the one error path (:class:`Command`) and, unless
    ``show_default=False`` (options whose default is decided later, as in ``pretrain``), defaults shown."""
    settings = {**CONTEXT, "show_default": show_default, **kwargs.pop("context_settings", {})}
    return click.command(name, cls=Command, context_settings=settings, **kwargs)
