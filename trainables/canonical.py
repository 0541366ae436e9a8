"""The base of every spec: frozen, no unknown keys, and a canonical string whose hash is its id.

Like open_lth's hyperparameter dataclasses, identity, de-duplication and resume follow from the
spec alone: two specs with the same fields have the same id, wherever they came from.
"""
from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json", context={"identity": True}), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:12]
