"""The one error of the export: bad input or a ticket that cannot be exported, said plainly."""
from __future__ import annotations


class ExportError(ValueError):
    """What the user asked cannot be exported; the message names the problem (the CLI exits 2)."""
