"""The one error path of every command, and the click settings every command shares.

A user's mistake becomes ONE line, ``Error: <first line of the message>``, on stderr, and the exit status says
whose move it is (:data:`EXIT_CODES`): 2 for an option value refused (by click: a wrong type, a value outside
``choices`` or a range, which keep click's usage line; or by a config or a check against the data:
:class:`avsa_data.options.OptionError`), 1 for bad input data (unreadable shards, a corrupt checkpoint, a missing
input file), 75 for a job stopped by its environment (disk full, out of memory, another job holding the output
folder: rerun to resume), 130 for a command stopped by SIGINT (Ctrl-C) or SIGTERM (rerun the same command to
resume; a training run first finishes its step and writes a checkpoint). Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import click

#: Exit status of bad input data (a file's content: shards, a checkpoint, a manifest, a video list).
EXIT_DATA = 1
#: Exit status of an option value refused (click's own usage errors use it too).
EXIT_OPTION = 2
#: Exit status of a job stopped by its environment (disk full, out of memory, …): rerun to resume (EX_TEMPFAIL).
EXIT_RETRY = 75
#: Exit status of a command stopped by SIGINT or SIGTERM (128 + SIGINT, as a shell reports Ctrl-C).
EXIT_INTERRUPTED = 130
#: The exit statuses, as the README's table gives them.
EXIT_CODES = {EXIT_OPTION: "an option value refused", EXIT_DATA: "bad input data",
              EXIT_RETRY: "stopped by the environment", EXIT_INTERRUPTED: "interrupted"}
#: Settings of every command: -h as well as --help, and a help text that uses a wide terminal.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 120}


def user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that describe a user's mistake in one line (imported only when something went wrong)."""
    from avsa_data.jobcontrol import FolderBusy
    from avsa_data.labels.base import LabelError
    from avsa_data.layouts import LayoutError
    from avsa_data.shards import ShardJobError

    # ValueError covers the configs' __post_init__ / validate checks (OptionError) and the project's one-line error
    # types derived from it (StorageError, ShardFormatError, CheckpointError, EventLabelError, MemberError …).
    return (ValueError, FileNotFoundError, ShardJobError, LayoutError, LabelError, FolderBusy)


def exit_status(e: BaseException) -> int:
    """The exit status of a user error (see the module docstring)."""
    from avsa_data.jobcontrol import FolderBusy, Interrupted
    from avsa_data.options import OptionError
    from avsa_data.shards import JobStopped

    if isinstance(e, (JobStopped, FolderBusy)):  # the machine, or another job on the folder: rerun later
        return EXIT_RETRY
    if isinstance(e, OptionError):
        return EXIT_OPTION
    if isinstance(e, (Interrupted, KeyboardInterrupt)):
        return EXIT_INTERRUPTED
    return EXIT_DATA


class Stopped(click.ClickException):
    """A command stopped by a signal: its one line (no ``Error:``) and exit status 130."""

    exit_code = EXIT_INTERRUPTED

    def show(self, file=None) -> None:
        click.echo(self.format_message(), err=True)


class Command(click.Command):
    """A click command whose user errors (:func:`user_error_types`, plus ``user_errors``) end it with one line,
    and whose ``--help`` lists its options in ``sections`` (title → option names; the others come last)."""

    def __init__(self, *args, user_errors: tuple[type[Exception], ...] = (),
                 sections: dict[str, list[str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user_errors = tuple(user_errors)
        self.sections = dict(sections or {})

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = [(p.name, p.get_help_record(ctx)) for p in self.get_params(ctx)]
        records = [(name, rec) for name, rec in records if rec is not None]
        listed = {n for names in self.sections.values() for n in names}
        for title, names in self.sections.items():
            rows = [rec for n in names for name, rec in records if name == n]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        rest = [rec for name, rec in records if name not in listed]
        if rest:
            with formatter.section("Other options" if self.sections else "Options"):
                formatter.write_dl(rest)

    def invoke(self, ctx: click.Context):
        from avsa_data.jobcontrol import Interrupted, handle_stop_signals

        try:
            with handle_stop_signals():
                return super().invoke(ctx)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            raise Stopped(str(Interrupted())) from None
        except Interrupted as e:
            raise Stopped(str(e)) from None
        except Exception as e:
            if not isinstance(e, (*user_error_types(), *self.user_errors)):
                raise  # a bug: keep the traceback
            lines = str(e).strip().splitlines()
            err = click.ClickException(lines[0] if lines else type(e).__name__)
            err.exit_code = exit_status(e)
            raise err from None


def command(name: str | None = None, *, show_default: bool = True, config: bool = True, **kwargs):
    """``click.command`` with the shared :data:`CONTEXT`, the one error path (:class:`Command`), ``--help``
    sections (``sections=``), the ``--config FILE`` option (unless ``config=False``: ``pretrain`` has its own)
    and, unless ``show_default=False`` (options whose default is decided later, as in ``pretrain``), defaults
    shown."""
    settings = {**CONTEXT, "show_default": show_default, **kwargs.pop("context_settings", {})}
    make = click.command(name, cls=Command, context_settings=settings, **kwargs)
    if not config:
        return make

    def decorate(fn):
        from avsa_data.cli._options import config_file_option

        return make(config_file_option(fn))

    return decorate
