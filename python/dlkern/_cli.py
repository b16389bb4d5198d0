"""What every ``python -m dlkern`` command uses: descriptions and epilogs
as written (their tables keep their layout) and each option's default at the end of its
help, taken from argparse or, for options whose default depends on other options (and so
is None in the parser), from the text the command set as the action's ``shown_default`` attribute."""

from __future__ import annotations

import argparse
import re


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """RawDescriptionHelpFormatter that appends "(default: X)" to every option's help.

    An option whose help already states its default (the word "default") keeps it; a
    default of None shows the action's ``shown_default`` text when the command set one
    (a sentinel telling "given" from "not given"), else "none"; flags show "off"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if "default" in text:  # (a %(default)s included)
            return text
        if getattr(action, "shown_default", None) is not None:
            shown = action.shown_default.replace("%", "%%")
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            shown = "off" if isinstance(action, argparse._StoreTrueAction) else "on"
        elif action.default is not None:
            shown = "%(default)s"
        else:
            shown = "none"
        return f"{text} (default: {shown})" if text else f"(default: {shown})"

    def _format_text(self, text):
        # Descriptions are often a module's docstring, written for the API pages: its
        # ``literal`` markup reads as noise in a terminal, so it becomes 'literal'.
        return super()._format_text(re.sub(r"``(.+?)``", r"'\1'", text, flags=re.S))


# The exit-status convention of every command: 2 for a command line that cannot work
# (argparse's own errors, bad values, options that do not combine), 1 for a failure while
# running (a missing or damaged file, a data set that is not there, a diverged loss).
# __main__.main prints either as one line, `error: <command>: <message>`, no traceback.
USAGE, FAILURE = 2, 1


class UsageError(Exception):
    """A command line that cannot work: exit status 2."""


class RunError(Exception):
    """A failure while running the command: exit status 1."""
