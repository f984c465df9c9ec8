"""The entry of the stages and commands: the library's log records shown as a stage's output lines,
and an error the library reports in one line (config.params.StageError: a bad params file, shard
outputs that do not merge) ending the stage with that line and no traceback. Importing it holds
the CPU kernels to AVX2 (config.isa), so a stage script imports it before numpy or torch."""

import functools
import logging
import os
import sys

from tweetsim.config import isa

isa.hold()  # before anything below loads numpy: its switches are read once, at load

from tweetsim.config.params import StageError  # noqa: E402


class _CurrentStreams(logging.Handler):
    """INFO records to stdout, WARNING and above to stderr, each the stream of the moment (not the
    one at setup: a test's captured output, or a redirected one, gets them)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Show the `tweetsim` loggers' records as plain lines (once per process)."""
    root = logging.getLogger("tweetsim")
    if not any(isinstance(h, _CurrentStreams) for h in root.handlers):
        handler = _CurrentStreams()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


def stage(main):
    """Decorate a stage script's main: log records shown, a StageError becomes SystemExit with its
    line, Ctrl-C one line and exit 130 (outputs are written at the end, so none is half-written)."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        configure_logging()
        if isa.late():  # a stage script imports this module first (tests/test_isa.py); a test process need not
            logging.getLogger("tweetsim").warning(
                "%s loaded before tweetsim.pipeline.stage held the CPU kernels to AVX2: outputs may depend on this CPU",
                ", ".join(isa.late()))
        try:
            return main(*args, **kwargs)
        except StageError as e:
            raise SystemExit(str(e)) from None
        except KeyboardInterrupt:
            print(f"{os.path.basename(sys.argv[0]).removesuffix('.py') or 'stage'}: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return run
