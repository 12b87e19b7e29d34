"""`urbanrun scratchpad show|log TEXT|finish`: the training role's dated notes."""

from __future__ import annotations

from urbanrun.engine.cli.output import emit

from urbanrun.engine.notes import scratchpad
from urbanrun.engine.notes.autolog import draft_summary, write_summary
from urbanrun.engine.core.errors import UserError, storage_error


def cmd_scratchpad(args, config, store) -> int:
    settings = scratchpad.settings_from(config)
    try:
        return _run(args, settings, store)
    except OSError as exc:  # a read-only, full or missing scratchpad folder: one sentence naming it
        raise storage_error(exc, settings.root, "write the scratchpad",
                            f"make it writable, or set [scratchpad] root in {config.path}") from None


def _run(args, settings, store) -> int:
    if args.action == "show":
        info = scratchpad.show(settings, store)
        if args.json:
            emit(info)
            return 0
        print(f"today's notes: {info['today']}")
        for key, label in (("coordinator", "coordinator's latest"), ("previous", "your previous notes")):
            part = info[key]
            print(f"\n── {label}: {part['path'] or 'none found under ' + str(settings.root)} ──")
            if part["text"]:
                print(part["text"].rstrip())
        if info["open_runs"]:
            print("\n── runs mentioned there that are not finished ──")
            for run in info["open_runs"]:
                print(f"  {run['id']}  {run['status']}  (in {run['mentioned_in']})")
        if info["unresolved"]:
            print("\n── unresolved ──")
            for line in info["unresolved"]:
                print(f"  {line}")
        return 0
    if args.action == "log":
        path = log_entry(settings, " ".join(args.text))
        if args.json:
            emit({"path": str(path)})
        else:
            print(f"logged to {path}")
        return 0
    if args.action == "observe":
        return _observe(args, settings, store)
    records, _ = store.load_all()
    draft = draft_summary(records)
    if not args.yes:
        if args.json:
            emit({"draft": draft, "written": False})
        else:
            print(f"{draft}\n\n(not written: run `urbanrun scratchpad finish --yes` to append it, or edit it in the TUI)")
        return 0
    path = write_summary(settings, draft)
    if args.json:
        emit({"draft": draft, "written": True, "path": str(path)})
    else:
        print(f"{draft}\n\nwritten to {path}")
    return 0


def _observe(args, settings, store) -> int:
    """A cross-agent observation by hand, under the scratchpad's `### Cross-agent observations`."""
    from urbanrun.engine.notes.autolog import observe_by_hand

    text = " ".join(args.text).strip()
    if not text:
        raise UserError('scratchpad observe needs the observation, e.g. urbanrun scratchpad observe '
                        '"the architect\'s GATConv change doubles memory; cones batch 8 no longer fits".')
    path, runs = observe_by_hand(settings, store, text)
    if args.json:
        emit({"path": str(path), "runs": runs})
    else:
        print(f"observed in {path}")
    return 0


MAX_ENTRY_BYTES = 1 << 20  # notes, not logs: a pasted log belongs in a file the entry names


def log_entry(settings, text: str):
    """Append a dated entry (its first line the heading) to today's scratchpad; returns the file."""
    text = text.strip()
    if not text:
        raise UserError('scratchpad log needs the text to write, e.g. urbanrun scratchpad log "data loader fixed".')
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_ENTRY_BYTES:
        raise UserError(f"scratchpad log: the entry holds {size:,} bytes, over the {MAX_ENTRY_BYTES:,} an entry may "
                        f"hold (a day's notes are read whole); write the text to a file and log its path.")
    heading, _, body = text.partition("\n")
    path = scratchpad.today_path(settings)
    scratchpad.append(path, scratchpad.entry(heading, body), title=f"{settings.role} — {path.stem[:10]}")
    return path
