"""Run the main command in-process from a given folder: (exit status, standard output, standard error)."""

from __future__ import annotations

import os

from bragg_core.cli.main import main


def run_main(argv, cwd, capsys):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = main(list(argv))
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return rc, out.out, out.err
