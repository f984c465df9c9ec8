"""The stages' entry: an error the library reports in one line (config.params.StageError: a bad
params file, shard outputs that do not merge) ends the stage with that line and no traceback."""

import functools

from tweetsim.config.params import StageError


def stage(main):
    """Decorate a stage script's main: a StageError becomes SystemExit with its one line."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except StageError as e:
            raise SystemExit(str(e)) from None

    return run
