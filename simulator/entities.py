"""Stage 3 of 7 (simulation): the small objects on the per-ticket path and the record they leave.

A ``Ticket`` is a slotted object, not a process; an ``Agent`` carries the factors its
certification, employment and skills apply to handle time and resolution. ``Recorder``
streams one row per contact into compact ``array`` columns (a few bytes a field), turned
into a DataFrame once at the end. Times in seconds.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np
import pandas as pd

# ticket.state
WAITING, TAKEN, GONE = 0, 1, 2

# record.outcome
ANSWERED, ABANDONED, DEFLECTED, LOST, UNSERVED = 0, 1, 2, 3, 4
OUTCOMES = ("answered", "abandoned", "deflected", "lost", "unserved")

# ticket.kind: why the contact exists
PRIMARY, RETRY, RECONTACT, OUTAGE_RETURN, BACKLOG = 0, 1, 2, 3, 4
KINDS = ("primary", "retry", "recontact", "outage_return", "backlog")

INF = float("inf")


class Ticket:
    """One contact waiting for, or being served by, an agent."""

    __slots__ = (
        "arrival_s", "attempt", "channel", "city", "cls", "deadline_s", "handle_s", "kind", "lang",
        "overflowed", "retry", "state", "tier", "ttype", "u_resolve",
    )

    def __init__(
        self, arrival_s: float, deadline_s: float, handle_s: float, u_resolve: float,
        city: int, channel: int, ttype: int, tier: int, lang: int, kind: int, attempt: int,
        cls: int, retry: bool,
    ) -> None:
        self.arrival_s = arrival_s
        self.deadline_s = deadline_s
        self.handle_s = handle_s
        self.u_resolve = u_resolve
        self.city = city
        self.channel = channel
        self.ttype = ttype
        self.tier = tier
        self.lang = lang
        self.kind = kind
        self.attempt = attempt
        self.cls = cls
        self.state = WAITING
        self.retry = retry
        self.overflowed = False


class FollowUpTask:
    """A follow-up call owed to a customer whose complex ticket was resolved."""

    __slots__ = ("city", "created_s", "due_s", "handle_s", "state")

    def __init__(self, city: int, created_s: float, due_s: float, handle_s: float) -> None:
        self.city, self.created_s, self.due_s, self.handle_s = city, created_s, due_s, handle_s
        self.state = WAITING


class Agent:
    """An agent of a group; ``wake`` is its actor's step that ends an idle spell (``AgentShifts``)."""

    __slots__ = (
        "busy_s", "certification", "fcr_add", "fcr_mult", "group", "handle_mult", "home",
        "languages", "on_shift", "overtime_s", "wake",
    )

    def __init__(
        self, group: int, home: int, languages: frozenset[int], handle_mult: float,
        fcr_mult: float, fcr_add: float, certification: int,
    ) -> None:
        self.group, self.home, self.languages = group, home, languages
        self.handle_mult, self.fcr_mult, self.fcr_add = handle_mult, fcr_mult, fcr_add
        self.certification = certification
        self.wake = None
        self.on_shift = False
        self.busy_s = 0.0
        self.overtime_s = 0.0


@dataclass(frozen=True)
class Codebook:
    """Names behind the integer codes packed into records."""

    cities: tuple[str, ...]
    channels: tuple[str, ...]
    types: tuple[str, ...]
    tiers: tuple[str, ...]
    languages: tuple[str, ...]
    groups: tuple[str, ...]

    def pack(self, t: Ticket) -> int:
        """One int for (channel, type, tier, language, kind, attempt); ``Recorder.add`` inlines it."""
        return ((((t.channel * 16 + t.ttype) * 16 + t.tier) * 64 + t.lang + 1) * 8 + t.kind) * 16 + t.attempt


def _unpack(code: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for name, base in (("attempt", 16), ("kind", 8), ("lang", 64), ("tier", 16), ("ttype", 16)):
        out[name] = code % base
        code = code // base
    out["channel"] = code
    out["lang"] = out["lang"] - 1
    return out


class Recorder:
    """Columnar, append-only record of every contact's fate."""

    __slots__ = ("_appends", "_book", "answer_s", "arrival_s", "city", "code", "flags", "group", "outcome")

    # flags bits
    RESOLVED, MISMATCH, OVERFLOW = 1, 2, 4

    def __init__(self, book: Codebook) -> None:
        self._book = book
        self.city = array("h")
        self.code = array("q")
        self.arrival_s = array("d")
        self.answer_s = array("d")
        self.outcome = array("b")
        self.flags = array("b")
        self.group = array("h")
        self._appends = tuple(
            getattr(self, c).append
            for c in ("city", "code", "arrival_s", "answer_s", "outcome", "flags", "group")
        )

    def add(self, t: Ticket, answer_s: float, outcome: int, flags: int, group: int) -> None:
        """Append one row (the hot path: seven bound appends, the code packed inline)."""
        a = self._appends
        a[0](t.city)
        a[1](((((t.channel * 16 + t.ttype) * 16 + t.tier) * 64 + t.lang + 1) * 8 + t.kind) * 16 + t.attempt)
        a[2](t.arrival_s)
        a[3](answer_s)
        a[4](outcome)
        a[5](flags)
        a[6](group)

    def __len__(self) -> int:
        return len(self.city)

    def frame(self) -> pd.DataFrame:
        """The records as a DataFrame with categorical names (one row per contact)."""
        b = self._book
        code = np.frombuffer(self.code, dtype=np.int64)
        f = _unpack(code)
        flags = np.frombuffer(self.flags, dtype=np.int8)
        lang = f["lang"]
        return pd.DataFrame(
            {
                "city": pd.Categorical.from_codes(np.frombuffer(self.city, np.int16), b.cities),
                "channel": pd.Categorical.from_codes(f["channel"], b.channels),
                "ticket_type": pd.Categorical.from_codes(f["ttype"], b.types),
                "tier": pd.Categorical.from_codes(f["tier"], b.tiers),
                "language": pd.Categorical.from_codes(lang, b.languages),
                "kind": pd.Categorical.from_codes(f["kind"], KINDS),
                "attempt": f["attempt"].astype(np.int8),
                "arrival_s": np.frombuffer(self.arrival_s, np.float64),
                "answer_s": np.frombuffer(self.answer_s, np.float64),
                "outcome": pd.Categorical.from_codes(np.frombuffer(self.outcome, np.int8), OUTCOMES),
                "resolved": (flags & self.RESOLVED) > 0,
                "mismatch": (flags & self.MISMATCH) > 0,
                "overflowed": (flags & self.OVERFLOW) > 0,
                "group": pd.Categorical.from_codes(np.frombuffer(self.group, np.int16), b.groups),
            }
        )
