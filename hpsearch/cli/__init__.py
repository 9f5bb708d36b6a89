"""The `hpsearch` command line: the only place that prints or exits. Heavy libraries (torch,
transformers) are imported only by the commands that train, so `--help` and the read-only commands
start fast.

app.py holds the group, the shared options and the error boundary; the commands live by what they
do: search_commands.py (run, create, worker, trial-rank; search.py hands them to
hpsearch.workers.run_search, which runs their trials here, in a trial group or in supervised
workers), view_commands.py (dashboard, status, best, report), model_commands.py (export, train).
"""

# Importing the command modules registers their commands on the group.
from hpsearch.cli import model_commands, search_commands, view_commands  # noqa: F401
from hpsearch.cli.app import cli, main

__all__ = ["cli", "main"]
