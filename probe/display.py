"""Text for the terminal: whatever a device or an input file said, shown and never obeyed.

Rich reads `[...]` in a plain string as markup (`[/x]` raises MarkupError, `[link=...]` makes
a hyperlink) and passes escape sequences to the terminal. Every string that holds data (device
ids, addresses, summaries, paths, error messages) therefore reaches rich through `shown_text`:
a `Text` (never parsed as markup or emoji) with every control, bidi and unpaired character
written as `\\xNN`/`\\uNNNN` (probe.escaping.shown) and every secret the process holds
redacted. Log lines go through `SafeLogFilter` for the same reasons.
"""

from __future__ import annotations

import logging

from rich.text import Text

from probe.escaping import shown
from probe.secrets import redact


def shown_text(text: object, style: str = "") -> Text:
    """`text` as a rich Text: redacted, controls escaped, on one line, never markup."""
    return Text(shown(redact(str(text))), style=style)


class SafeLogFilter(logging.Filter):
    """Makes each log record's message safe: secrets redacted, controls escaped, one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = shown(redact(record.getMessage()))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = shown(redact(logging.Formatter().formatException(
                record.exc_info)), lines=True)
        record.exc_info = None
        return True


def install_log_filter() -> None:
    """Put SafeLogFilter on every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SafeLogFilter) for f in handler.filters):
            handler.addFilter(SafeLogFilter())
