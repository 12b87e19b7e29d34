"""The urbanrun Textual app. Never imports torch; talks to the engine only through its API."""
