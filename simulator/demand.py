"""Stage 2 of 7 (demand): a city's arrivals, sampled one day at a time as numpy arrays.

Arrivals are a non-homogeneous Poisson process with a piecewise-constant hourly rate:
the count of each hour is drawn, then the times are uniform within it. Sampling counts per
interval (instead of inter-arrival times at the current rate) never skips a short busy hour.
An optional gamma day multiplier (mean 1, coefficient of variation ``volume_cv``) gives the
over-dispersion of a Poisson-gamma model. Every attribute of a primary arrival (channel,
type, tier, language, handle time, patience, resolution draw) comes from its own stream and
is drawn at arrival, so staffing changes never shift anyone's sample. Times in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.special import ndtri

from simulator.scenario import Distribution, Scenario
from simulator.streams import CityStreams

_NORMAL = NormalDist()
HOUR = 3600.0
DAY = 86400.0
WEEKDAY_INDEX = {d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}


@dataclass(frozen=True)
class DistTable:
    """Vectorised parameters of a family of distributions: lognormal where ``is_exp`` is False."""

    is_exp: np.ndarray
    mean: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def of(cls, dists: list[Distribution | None]) -> DistTable:
        """Parameters for each entry; ``None`` means an infinite duration."""
        mean = np.array([np.inf if d is None else d.mean_s for d in dists])
        cv = np.array([1.0 if d is None else d.cv for d in dists])
        sigma2 = np.log1p(cv**2)
        with np.errstate(invalid="ignore"):
            mu = np.log(mean) - sigma2 / 2
        is_exp = np.array([d is not None and d.dist == "exponential" for d in dists])
        return cls(is_exp, mean, mu, np.sqrt(sigma2))

    def sample(self, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Inverse-CDF draws for entries ``idx`` from uniforms ``u`` (one uniform per draw)."""
        u = np.clip(u, 1e-12, 1 - 1e-12)
        expo = -np.log1p(-u) * self.mean[idx]
        logn = np.exp(self.mu[idx] + self.sigma[idx] * ndtri(u))
        return np.where(self.is_exp[idx], expo, logn)

    def scalar(self, i: int, u: float) -> float:
        """The inverse-CDF draw of entry ``i`` from one uniform, in plain Python (no numpy call).

        Identical to ``sample`` for the same uniform; used on the per-contact path of the
        rarer secondary contacts, where a numpy call on a one-element array costs ~13 us.
        """
        u = min(max(u, 1e-12), 1 - 1e-12)
        if self._is_exp[i]:
            return -math.log1p(-u) * self._mean[i]
        return math.exp(self._mu[i] + self._sigma[i] * _NORMAL.inv_cdf(u))

    def __post_init__(self) -> None:
        for name in ("is_exp", "mean", "mu", "sigma"):
            object.__setattr__(self, "_" + name, getattr(self, name).tolist())


@dataclass(frozen=True)
class Arrivals:
    """One day's primary arrivals of one city, sorted by time, as plain lists for fast iteration."""

    time_s: list[float]
    channel: list[int]
    ttype: list[int]
    tier: list[int]
    lang: list[int]
    handle_s: list[float]
    deadline_s: list[float]
    u_resolve: list[float]
    retry: list[bool]
    deflected: list[bool]
    lost: list[bool]
    settled: list[bool]  # lost or deflected: the outcome is known at arrival

    def __len__(self) -> int:
        return len(self.time_s)


class CityDemand:
    """Everything needed to sample one city's arrivals, precomputed once per scenario."""

    def __init__(self, scenario: Scenario, city: str, languages: tuple[str, ...]) -> None:
        sc, c = scenario, scenario.cities[city]
        self.horizon_s = sc.horizon_s
        self.channels = tuple(sc.channels)
        self.types = tuple(sc.ticket_types)
        self.tiers = tuple(sc.tiers)
        self.p_channel = _probs(sc.channel_mix_of(city), self.channels)
        type_mix = sc.type_mix_of(city)
        weights = np.array([type_mix.get(t, 0.0) * c.surge.get(t, 1.0) for t in self.types])
        self.volume_factor = float(weights.sum())  # a surge adds volume, it does not reshuffle
        self.p_type = weights / weights.sum() if weights.sum() > 0 else weights
        self.p_tier = _probs(sc.tier_mix_of(city), self.tiers)
        self.lang_codes = np.array([languages.index(lang) for lang in c.languages] + [-1])
        shares = list(c.languages.values())
        self.p_lang = np.array(shares + [max(0.0, 1.0 - sum(shares))])
        self.p_lang /= self.p_lang.sum()
        self.tickets_per_day = c.tickets_per_day
        self.handle_factor = c.handle_factor
        self.volume_cv = c.volume_cv
        self.hour_w = np.array(sc.profiles.hourly_weights())
        self.day_w = np.array(sc.profiles.daily_weights())
        self.start_weekday = WEEKDAY_INDEX[sc.start_weekday]
        nch = len(self.channels)
        self.handle = DistTable.of(
            [sc.ticket_types[t].handle.for_channel(ch) for t in self.types for ch in self.channels]
        )
        self.nch = nch
        chans = [sc.channels[ch] for ch in self.channels]
        self.patience = DistTable.of([ch.patience for ch in chans])
        self.p_retry = np.array([ch.retry_probability for ch in chans])
        bot = set(sc.chatbot.channels)
        self.bot_ok = np.array(
            [[sc.ticket_types[t].chatbot_eligible and ch in bot for ch in self.channels] for t in self.types]
        )
        self.penetration = c.chatbot_penetration
        self.outages = [
            (o.start_h * HOUR, (o.start_h + o.duration_h) * HOUR, o.loss_probability)
            for o in sc.outages
            if o.cities == "all" or city in o.cities
        ]

    def hourly_means(self, day: int, multiplier: float = 1.0) -> np.ndarray:
        """Expected arrivals in each hour of ``day`` (0-based from the horizon start)."""
        weekday = (self.start_weekday + day) % 7
        per_day = self.tickets_per_day * self.volume_factor * self.day_w[weekday] * multiplier
        return per_day / 24.0 * self.hour_w

    def days(self, rng: CityStreams) -> Iterator[Arrivals]:
        """Yield each day's arrivals in order; the last day is cut at the horizon."""
        n_days = int(np.ceil(self.horizon_s / DAY))
        if self.volume_cv > 0:
            k = 1.0 / self.volume_cv**2
            mult = rng.volume.gamma(k, 1.0 / k, size=n_days)
        else:
            mult = np.ones(n_days)
        for day in range(n_days):
            yield self.sample_day(day, float(mult[day]), rng)

    def sample_day(self, day: int, multiplier: float, rng: CityStreams) -> Arrivals:
        """Sample one day's arrivals and all their per-ticket draws."""
        means = self.hourly_means(day, multiplier)
        counts = rng.arrivals.poisson(means)
        hours = np.repeat(np.arange(24), counts)
        t = np.sort(day * DAY + (hours + rng.arrivals.random(hours.size)) * HOUR)
        t = t[t < self.horizon_s]
        return self.attributes(t, rng)

    def attributes(self, t: np.ndarray, rng: CityStreams, channel: np.ndarray | None = None) -> Arrivals:
        """Draw every attribute of arrivals at times ``t`` (channel given for a backlog)."""
        n = t.size
        a = rng.attributes
        ch = a.choice(self.nch, size=n, p=self.p_channel) if channel is None else channel
        ty = a.choice(len(self.types), size=n, p=self.p_type)
        tier = a.choice(len(self.tiers), size=n, p=self.p_tier)
        lang = self.lang_codes[a.choice(self.lang_codes.size, size=n, p=self.p_lang)]
        handle = self.handle_factor * self.handle.sample(ty * self.nch + ch, rng.handle.random(n))
        deadline = t + self.patience.sample(ch, rng.patience.random(n))
        retry = rng.patience.random(n) < self.p_retry[ch]
        u_res = rng.resolution.random(n)
        deflected = self.bot_ok[ty, ch] & (rng.chatbot.random(n) < self.penetration)
        lost = np.zeros(n, dtype=bool)
        u_out = rng.outage.random(n)
        for start, end, p in self.outages:
            lost |= (t >= start) & (t < end) & (u_out < p)
        return Arrivals(
            t.tolist(), ch.tolist(), ty.tolist(), tier.tolist(), lang.tolist(), handle.tolist(),
            deadline.tolist(), u_res.tolist(), retry.tolist(), deflected.tolist(), lost.tolist(),
            (deflected | lost).tolist(),
        )


def _probs(mix: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    p = np.array([mix.get(n, 0.0) for n in names], dtype=float)
    return p / p.sum()
