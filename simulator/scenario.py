"""Stage 1 of 7: scenario file -> validated, frozen ``Scenario``.

Validation happens once, here, at the boundary: unknown keys, negative rates, shares
above one, shifts longer than a day and references to cities that do not exist are
rejected with a message naming the field. Everything downstream takes a ``Scenario``,
never a dict. Times in the file are hours or seconds as the field name says
(``*_h``, ``*_s``); the engine works in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    field_validator,
    model_validator,
)

Share = Annotated[float, Field(ge=0.0, le=1.0)]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
POLICIES = ("fifo", "priority", "skills", "overflow")


class Spec(BaseModel):
    """Base of every schema node: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_shares(shares: dict[str, float], what: str, *, total: bool = True) -> None:
    """Reject share tables that do not sum to one (or exceed one when ``total`` is False)."""
    s = sum(shares.values())
    if total and shares and not math.isclose(s, 1.0, abs_tol=1e-6):
        raise ValueError(f"{what} must sum to 1, got {s:.4f}")
    if not total and s > 1.0 + 1e-9:
        raise ValueError(f"{what} must sum to at most 1, got {s:.4f}")


class Distribution(Spec):
    """A positive duration: ``lognormal`` (mean and coefficient of variation) or ``exponential``."""

    dist: Literal["lognormal", "exponential"] = "lognormal"
    mean_s: PositiveFloat
    cv: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _exp_cv(self) -> Distribution:
        if self.dist == "exponential" and self.cv != 1.0:
            raise ValueError("an exponential distribution has cv 1; drop cv or use lognormal")
        return self


class Channel(Spec):
    """A contact channel. Synchronous customers wait on the line; asynchronous ones in a backlog."""

    synchronous: bool
    target_s: PositiveFloat
    patience: Distribution | None = None
    retry_probability: Share = 0.0
    retry_delay: Distribution = Distribution(dist="exponential", mean_s=1800.0)

    @model_validator(mode="after")
    def _async_no_patience(self) -> Channel:
        if not self.synchronous and self.patience is not None:
            raise ValueError("asynchronous channels have no patience: customers do not hang up")
        return self


class HandleTime(Spec):
    """Handle time of a ticket type: a default distribution and per-channel overrides."""

    default: Distribution
    by_channel: dict[str, Distribution] = {}

    def for_channel(self, channel: str) -> Distribution:
        return self.by_channel.get(channel, self.default)


class TicketType(Spec):
    """A kind of ticket: how long it takes, how often it is solved first time, what follows it."""

    handle: HandleTime
    fcr: Share = 0.85
    chatbot_eligible: bool = False
    fast_lane: bool = False
    follow_up: bool = False


class Tier(Spec):
    """A customer tier (RFM). Lower ``rank`` is served first under triage."""

    share: Share
    rank: NonNegativeInt


class Employment(Spec):
    """Effects and cost of an employment type."""

    cost_per_hour: NonNegativeFloat = 0.0
    handle_factor: PositiveFloat = 1.0
    fcr_factor: Annotated[float, Field(gt=0.0, le=1.5)] = 1.0


class Resolution(Spec):
    """First-contact resolution and re-contacts."""

    fcr_per_cert_level: Annotated[float, Field(ge=0.0, le=0.2)] = 0.02
    handle_factor_per_cert_level: Annotated[float, Field(gt=0.0, le=1.0)] = 0.97
    mismatch_fcr_factor: Share = 0.6
    mismatch_handle_factor: Annotated[float, Field(ge=1.0, le=5.0)] = 1.3
    recontact_probability: Share = 0.7
    recontact_delay: Distribution = Distribution(dist="exponential", mean_s=86400.0)
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3


class FollowUp(Spec):
    """Follow-up tasks created by resolved tickets of types with ``follow_up: true``."""

    due_s: PositiveFloat = 86400.0
    handle: Distribution = Distribution(dist="exponential", mean_s=300.0)


class Chatbot(Spec):
    """The chatbot answers eligible tickets first; it resolves ``penetration`` of them."""

    response_s: NonNegativeFloat = 30.0
    channels: tuple[str, ...] = ("phone", "chat", "email", "social")


class Shift(Spec):
    """A shift pattern: start hour, length in hours, working days."""

    start_h: Annotated[float, Field(ge=0.0, lt=24.0)]
    length_h: Annotated[float, Field(gt=0.0)]
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = WEEKDAYS

    @field_validator("length_h")
    @classmethod
    def _at_most_a_day(cls, v: float) -> float:
        if v > 24.0:
            raise ValueError(f"a shift lasts at most 24 h, got {v}; split it into two groups")
        return v


class AgentGroup(Spec):
    """Agents who share a shift, skills, employment type and certification level."""

    name: str
    headcount: NonNegativeInt
    shift: Shift = Shift(start_h=0.0, length_h=24.0)
    employment: str = "full_time"
    languages: tuple[str, ...] = ()
    certification: Annotated[int, Field(ge=0, le=5)] = 1


class Overflow(Spec):
    """Where a city's tickets may go after waiting ``after_s``: other cities or remote pools."""

    after_s: NonNegativeFloat = 300.0
    to: tuple[str, ...]


class Routing(Spec):
    """Routing policy. Each policy includes the ones before it: fifo < priority < skills < overflow.

    fifo: one queue, no triage. priority: synchronous before asynchronous, fast lane, tier rank.
    skills: a ticket needing a local language waits ``language_wait_s`` for a speaker.
    overflow: after ``overflow.after_s`` the ticket may be served by ``overflow.to``.
    """

    policy: Literal["fifo", "priority", "skills", "overflow"] = "fifo"
    language_wait_s: NonNegativeFloat = 120.0
    overflow: Overflow | None = None

    @model_validator(mode="after")
    def _overflow_needs_targets(self) -> Routing:
        if self.policy == "overflow" and self.overflow is None:
            raise ValueError("policy 'overflow' needs an 'overflow' block with 'to'")
        return self

    @property
    def level(self) -> int:
        return POLICIES.index(self.policy)


class City(Spec):
    """One contact centre: its demand, its agents and its policies.

    ``follow_up_share`` is the share of owed follow-ups the centre actually schedules (its
    closed-loop coverage); the rest are owed and never made. ``handle_factor`` and
    ``fcr_factor`` scale the handle times and first-contact resolution of the city's tickets
    for local practices (tools, KPI focus) that the rest of the model does not describe.
    """

    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    tickets_per_day: NonNegativeFloat
    channel_mix: dict[str, Share] | None = None
    type_mix: dict[str, Share] | None = None
    tier_mix: dict[str, Share] | None = None
    languages: dict[str, Share] = {}
    surge: dict[str, PositiveFloat] = {}
    chatbot_penetration: Share = 0.0
    follow_up_share: Share = 1.0
    handle_factor: Annotated[float, Field(gt=0.0, le=3.0)] = 1.0
    fcr_factor: Annotated[float, Field(gt=0.0, le=1.5)] = 1.0
    routing: Routing = Routing()
    agent_groups: tuple[AgentGroup, ...] = ()
    initial_backlog: dict[str, NonNegativeInt] = {}
    volume_cv: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _shares(self) -> City:
        for name in ("channel_mix", "type_mix", "tier_mix"):
            if getattr(self, name) is not None:
                _check_shares(getattr(self, name), name)
        _check_shares(self.languages, "languages", total=False)
        names = [g.name for g in self.agent_groups]
        if len(set(names)) != len(names):
            raise ValueError(f"agent group names repeat: {names}")
        return self


class Pool(Spec):
    """A remote agent pool that serves no city of its own, only overflow."""

    agent_groups: tuple[AgentGroup, ...]


class Outage(Spec):
    """A CRM outage: tickets arriving in it are lost with ``loss_probability``."""

    start_h: NonNegativeFloat
    duration_h: PositiveFloat
    cities: tuple[str, ...] | Literal["all"] = "all"
    loss_probability: Share = 1.0


class Profiles(Spec):
    """Relative arrival intensity by hour of day (24) and day of week (7, Monday first)."""

    hour_of_day: tuple[NonNegativeFloat, ...] = (1.0,) * 24
    day_of_week: tuple[NonNegativeFloat, ...] = (1.0,) * 7

    @model_validator(mode="after")
    def _lengths(self) -> Profiles:
        if len(self.hour_of_day) != 24 or len(self.day_of_week) != 7:
            raise ValueError("hour_of_day needs 24 values and day_of_week 7")
        if sum(self.hour_of_day) <= 0 or sum(self.day_of_week) <= 0:
            raise ValueError("a profile needs at least one positive value")
        return self

    def hourly_weights(self) -> list[float]:
        """Hour-of-day weights normalised to mean 1 (a day's volume is preserved)."""
        m = sum(self.hour_of_day) / 24.0
        return [w / m for w in self.hour_of_day]

    def daily_weights(self) -> list[float]:
        """Day-of-week weights normalised to mean 1."""
        m = sum(self.day_of_week) / 7.0
        return [w / m for w in self.day_of_week]


DIMENSIONS = ("response_speed", "resolution", "attitude", "follow_up")


class Observed(Spec):
    """Scores measured in the real department, the targets of ``capplan calibrate``.

    ``national_weighting`` says how the measured national scores average the cities: a
    survey with about the same number of respondents per city is ``equal``; one weighted
    by contacts is ``volume``. ``feedback_cases`` (complaints in the period) and
    ``complaint_shares`` (a city's share of complaints by cause) calibrate the complaint
    propensities.
    """

    cities: dict[str, Annotated[float, Field(ge=0.0, le=100.0)]] = {}
    national: dict[str, Annotated[float, Field(ge=0.0, le=100.0)]] = {}
    national_weighting: Literal["equal", "volume"] = "equal"
    feedback_cases: NonNegativeInt | None = None
    complaint_shares: dict[str, dict[str, Share]] = {}

    @field_validator("complaint_shares")
    @classmethod
    def _causes(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        causes = ("could_not_understand", "unresolved", "slow_response", "lost_ticket")
        for shares in v.values():
            for cause in shares:
                if cause not in causes:
                    raise ValueError(f"unknown complaint cause '{cause}'; allowed: {', '.join(causes)}")
        return v

    @field_validator("national")
    @classmethod
    def _national_keys(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            if key not in DIMENSIONS + ("overall",):
                raise ValueError(f"unknown name '{key}'; allowed: {', '.join(DIMENSIONS + ('overall',))}")
        return v


class Satisfaction(Spec):
    """Weights of the four scored dimensions, the fitted parameters' file, the observed scores."""

    weights: dict[str, NonNegativeFloat] = {
        "response_speed": 0.3,
        "resolution": 0.4,
        "attitude": 0.2,
        "follow_up": 0.1,
    }
    parameters_file: str | None = None
    observed: Observed | None = None

    @field_validator("weights")
    @classmethod
    def _weights(cls, w: dict[str, float]) -> dict[str, float]:
        expected = set(DIMENSIONS)
        if set(w) != expected:
            raise ValueError(f"weights need exactly {sorted(expected)}")
        _check_shares(w, "weights")
        return w


class ChatbotLevel(Spec):
    """A chatbot penetration level a city may buy, with its monthly cost."""

    penetration: Share
    cost_per_month: NonNegativeFloat


class Targets(Spec):
    """What a plan must achieve (defaults from the improvement plan)."""

    mean_first_response_h: PositiveFloat | None = 2.0
    channel_target_share: Share | None = 0.8
    city_score_min: Annotated[float, Field(ge=0.0, le=100.0)] | None = 88.0
    national_score_min: Annotated[float, Field(ge=0.0, le=100.0)] | None = 90.0
    dialect_coverage_min: Share | None = 0.8
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95


class Planning(Spec):
    """Decisions the optimizer may take per city, their costs (yuan) and limits, and the targets."""

    agent_hours_per_month: PositiveFloat = 168.0
    hire_cost_per_month: NonNegativeFloat = 12_000.0
    temporary_cost_per_month: NonNegativeFloat = 9_000.0
    language_training_cost: NonNegativeFloat = 3_000.0
    certification_cost_per_level: NonNegativeFloat = 2_000.0
    triage_cost: NonNegativeFloat = 20_000.0
    chatbot_levels: tuple[ChatbotLevel, ...] = (
        ChatbotLevel(penetration=0.45, cost_per_month=0.0),
        ChatbotLevel(penetration=0.6, cost_per_month=30_000.0),
        ChatbotLevel(penetration=0.7, cost_per_month=60_000.0),
    )
    shift_patterns: dict[str, Shift] = {
        "early": Shift(start_h=7.0, length_h=8.0),
        "day": Shift(start_h=9.0, length_h=8.0),
        "late": Shift(start_h=13.0, length_h=8.0),
        "evening": Shift(start_h=16.0, length_h=8.0),
        "night": Shift(start_h=23.0, length_h=8.0),
    }
    max_hires_per_city: NonNegativeInt | None = None
    max_temporary_per_city: NonNegativeInt | None = None
    max_trained_per_month: NonNegativeInt | None = None
    budget_per_month: NonNegativeFloat | None = None
    targets: Targets = Targets()


def _default_channels() -> dict[str, Channel]:
    exp3 = Distribution(dist="exponential", mean_s=180.0)
    return {
        "phone": Channel(synchronous=True, target_s=60.0, patience=exp3),
        "chat": Channel(synchronous=True, target_s=30.0, patience=exp3),
        "email": Channel(synchronous=False, target_s=4 * 3600.0),
        "social": Channel(synchronous=False, target_s=2 * 3600.0),
    }


class Scenario(Spec):
    """A whole what-if: demand, agents, policies, faults, horizon and seed."""

    name: str = "scenario"
    description: str = ""
    horizon_days: PositiveFloat = 1.0
    warmup_h: NonNegativeFloat = 0.0
    start_weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    replications: Annotated[int, Field(ge=1, le=10_000)] = 10
    seed: NonNegativeInt = 2025
    channels: dict[str, Channel] = Field(default_factory=_default_channels)
    ticket_types: dict[str, TicketType]
    tiers: dict[str, Tier] = {"all": Tier(share=1.0, rank=0)}
    channel_mix: dict[str, Share] = {"phone": 1.0}
    type_mix: dict[str, Share] | None = None
    employment: dict[str, Employment] = {"full_time": Employment()}
    resolution: Resolution = Resolution()
    follow_up: FollowUp = FollowUp()
    chatbot: Chatbot = Chatbot()
    profiles: Profiles = Profiles()
    cities: dict[str, City]
    pools: dict[str, Pool] = {}
    outages: tuple[Outage, ...] = ()
    outage_recontact_probability: Share = 0.8
    outage_recontact_delay: Distribution = Distribution(dist="exponential", mean_s=4 * 3600.0)
    satisfaction: Satisfaction = Satisfaction()
    planning: Planning = Planning()
    assumptions: dict[str, str] = {}

    @model_validator(mode="after")
    def _cross_references(self) -> Scenario:
        if not self.cities:
            raise ValueError("cities: at least one city is needed")
        languages = {lang for c in self.cities.values() for lang in c.languages}
        for field, n, most in (("ticket_types", len(self.ticket_types), 16), ("tiers", len(self.tiers), 16),
                               ("channels", len(self.channels), 64), ("languages (all cities)", len(languages), 63)):
            if n > most:
                raise ValueError(f"{field}: at most {most} are supported, got {n}")
        _check_shares(self.channel_mix, "channel_mix")
        _check_shares({k: t.share for k, t in self.tiers.items()}, "tiers.*.share")
        if self.type_mix is not None:
            _check_shares(self.type_mix, "type_mix")
        for key in self.channel_mix:
            _known(key, self.channels, "channel_mix")
        for key in self.type_mix or {}:
            _known(key, self.ticket_types, "type_mix")
        for key in self.chatbot.channels:
            _known(key, self.channels, "chatbot.channels")
        for tname, t in self.ticket_types.items():
            for ch in t.handle.by_channel:
                _known(ch, self.channels, f"ticket_types.{tname}.handle.by_channel")
        for cname, city in self.cities.items():
            self._check_city(cname, city)
        for pname, pool in self.pools.items():
            if pname in self.cities:
                raise ValueError(f"pools.{pname}: a pool may not share a city's name")
            self._check_groups(f"pools.{pname}", pool.agent_groups)
        if self.satisfaction.observed is not None:
            for c in self.satisfaction.observed.cities:
                _known(c, self.cities, "satisfaction.observed.cities")
            for c in self.satisfaction.observed.complaint_shares:
                _known(c, self.cities, "satisfaction.observed.complaint_shares")
        for i, out in enumerate(self.outages):
            if out.cities != "all":
                for c in out.cities:
                    _known(c, self.cities, f"outages.{i}.cities")
        if self.warmup_h >= self.horizon_days * 24:
            raise ValueError("warmup_h must be shorter than the horizon")
        return self

    def _check_city(self, cname: str, city: City) -> None:
        where = f"cities.{cname}"
        if city.type_mix is None and self.type_mix is None:
            raise ValueError(f"{where}.type_mix: no type mix here nor at the top level")
        for field, table in (
            ("channel_mix", self.channels),
            ("type_mix", self.ticket_types),
            ("tier_mix", self.tiers),
            ("surge", self.ticket_types),
            ("initial_backlog", self.channels),
        ):
            for key in getattr(city, field) or {}:
                _known(key, table, f"{where}.{field}")
        self._check_groups(where, city.agent_groups)
        langs = set(city.languages)
        for g in city.agent_groups:
            for lang in g.languages:
                if lang not in langs:
                    raise ValueError(
                        f"{where}.agent_groups.{g.name}.languages: '{lang}' is not one of the "
                        f"city's languages {sorted(langs)}"
                    )
        if city.routing.overflow is not None:
            targets = set(self.cities) | set(self.pools)
            for t in city.routing.overflow.to:
                _known(t, targets, f"{where}.routing.overflow.to")
                if t == cname:
                    raise ValueError(f"{where}.routing.overflow.to: a city cannot overflow to itself")

    def _check_groups(self, where: str, groups: tuple[AgentGroup, ...]) -> None:
        for g in groups:
            _known(g.employment, self.employment, f"{where}.agent_groups.{g.name}.employment")

    # -- derived views the engine uses -------------------------------------------------
    @property
    def horizon_s(self) -> float:
        return self.horizon_days * 86400.0

    @property
    def warmup_s(self) -> float:
        return self.warmup_h * 3600.0

    def channel_mix_of(self, city: str) -> dict[str, float]:
        return self.cities[city].channel_mix or self.channel_mix

    def type_mix_of(self, city: str) -> dict[str, float]:
        mix = self.cities[city].type_mix or self.type_mix
        assert mix is not None  # guaranteed by validation
        return mix

    def tier_mix_of(self, city: str) -> dict[str, float]:
        return self.cities[city].tier_mix or {k: t.share for k, t in self.tiers.items()}

    def only(self, cities: Sequence[str]) -> Scenario:
        """The same scenario restricted to ``cities`` (outages and observations of the others dropped).

        Cities are simulated independently (streams keyed by city name), so a city's numbers
        are the same here as in the whole scenario.
        """
        for c in cities:
            _known(c, self.cities, "cities")
        keep = set(cities)
        data = self.model_dump()
        data["cities"] = {c: v for c, v in data["cities"].items() if c in keep}
        data["outages"] = [o for o in data["outages"] if o["cities"] == "all" or keep & set(o["cities"])]
        for o in data["outages"]:
            if o["cities"] != "all":
                o["cities"] = [c for c in o["cities"] if c in keep]
        obs = data["satisfaction"]["observed"]
        if obs is not None:
            for key in ("cities", "complaint_shares"):
                obs[key] = {c: v for c, v in obs[key].items() if c in keep}
        return Scenario.model_validate(data)


def _known(key: str, table: object, field: str) -> None:
    """Raise a ValueError naming ``field`` when ``key`` is not among the allowed names."""
    if key not in table:  # type: ignore[operator]
        allowed = ", ".join(sorted(table))  # type: ignore[call-overload]
        raise ValueError(f"{field}: unknown name '{key}'; allowed: {allowed}")


def single_queue(
    *,
    arrival_rate_per_h: float,
    agents: int,
    aht_s: float,
    patience_s: float | None = None,
    handle_dist: Literal["lognormal", "exponential"] = "exponential",
    horizon_h: float = 24.0,
    warmup_h: float = 0.0,
    target_s: float = 20.0,
    classes: dict[str, float] | None = None,
    policy: Literal["fifo", "priority"] = "fifo",
    seed: int = 2025,
) -> Scenario:
    """The model reduced to one city, one phone queue and a 24/7 agent group (M/M/n[+M]).

    This is the configuration the analytic oracles cover; ``classes`` maps tier names to
    arrival shares for the priority (Cobham) case, highest priority first.
    """
    patience = None if patience_s is None else Distribution(dist="exponential", mean_s=patience_s)
    cv = 1.0
    handle = Distribution(dist=handle_dist, mean_s=aht_s, cv=cv)
    tiers = {name: Tier(share=s, rank=i) for i, (name, s) in enumerate((classes or {"all": 1.0}).items())}
    return Scenario(
        name=f"M/M/{agents}" + ("+M" if patience_s else ""),
        horizon_days=horizon_h / 24.0,
        warmup_h=warmup_h,
        seed=seed,
        channels={"phone": Channel(synchronous=True, target_s=target_s, patience=patience)},
        channel_mix={"phone": 1.0},
        ticket_types={"call": TicketType(handle=HandleTime(default=handle), fcr=1.0)},
        type_mix={"call": 1.0},
        tiers=tiers,
        chatbot=Chatbot(channels=()),
        cities={
            "Solo": City(
                tickets_per_day=arrival_rate_per_h * 24.0,
                routing=Routing(policy=policy),
                agent_groups=(AgentGroup(name="all", headcount=agents),),
            )
        },
    )
