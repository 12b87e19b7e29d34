"""`urbanrun` with no command: the TUI on a live engine, or on a recorded session (--replay)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from urbanrun.engine.core.config import Config
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.session.replay import ReplaySource

from .app import make_app
from .summary import replay_summary

HEADLESS_SIZE = (160, 45)


def run_tui(config: Config, runs_dir: Path, *, demo: bool = False, replay: str | None = None, speed: float = 1.0,
            headless: bool = False, screenshot: str | None = None) -> int:
    if replay:
        if screenshot:
            _check_screenshot_path(Path(screenshot))
        source = ReplaySource(replay, speed=speed, fast=headless)
        app = make_app(source, config=config, headless_summary=headless, screenshot=screenshot)
        if headless:
            app.run(headless=True, size=HEADLESS_SIZE)
            print(replay_summary(app.state, replay, len(source.events)), end="")
        else:
            app.run()
        return app.return_code or 0  # non-zero when the app died on an error
    if headless or screenshot:
        raise UserError("--headless and --screenshot need --replay SESSION.jsonl (a file from runs/sessions/).")
    engine = Engine(config, runs_dir)
    app = make_app(engine, demo=demo)
    left = None
    try:
        app.run()
    finally:
        left = engine.close()
    if app.quit_message:
        print(app.quit_message, file=sys.stderr if app.return_code else sys.stdout)
    if left:
        print(f"urbanrun: {left}", file=sys.stderr)
    return app.return_code or 0  # non-zero when the app died on an error (its traceback is kept)


def _check_screenshot_path(path: Path) -> None:
    """Said before the replay runs: a screenshot that cannot be saved was a traceback at its end."""
    if path.is_dir():
        raise UserError(f"--screenshot {path} is a folder; give a file in it, such as {path / 'screen.svg'}.")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"--screenshot {path}: the folder {folder} does not exist; make it or give a file in an "
                        f"existing folder.")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--screenshot {path}: the folder {folder} cannot be written; give a file in a folder you "
                        f"can write.")
