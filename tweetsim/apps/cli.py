"""The `tweetsim` command: each subcommand lives in the module that owns its concern."""

import importlib
import sys

from tweetsim.pipeline.stage import configure_logging
from tweetsim.config.params import StageError

# name -> (module, help); each module exposes cli(argv) -> int
COMMANDS = {
    "predict-likes": ("tweetsim.apps.predict_likes", "predict likes for an official behaviour-simulation file"),
    "best-time": ("tweetsim.apps.best_time", "predicted likes of one post at every hour of the next 7 days; the best slots"),
    "generate": ("tweetsim.apps.generate", "write tweets for an official content-simulation file"),
    "serve": ("tweetsim.apps.serve", "start the web app on 127.0.0.1"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: tweetsim COMMAND [options]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:15s} {help_}")
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    configure_logging()
    try:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        return int(module.cli(argv[1:]) or 0)
    except StageError as e:  # a bad params file: its one line, no traceback
        print(f"tweetsim {argv[0]}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while loading (mid-run, each command says what it kept)
        print(f"tweetsim {argv[0]}: interrupted; nothing was written", file=sys.stderr)
        return 130
