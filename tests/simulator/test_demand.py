"""The demand samplers against their distributions (style guide section 6.3, Ciw-style).

Each check compares draws with the configured distribution: a mean within 4 standard
errors, a Kolmogorov-Smirnov or chi-square test at p > 0.001. Seeds are fixed, so every
verdict is deterministic; the thresholds keep a correct sampler passing for nearly every
seed, and a wrong one (a factor off, a share swapped) fails by many standard errors.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from simulator import simulate
from simulator.demand import DAY, HOUR, CityDemand
from simulator.engine import codebook
from simulator.scenario import (
    AgentGroup,
    Channel,
    Chatbot,
    City,
    HandleTime,
    Outage,
    Profiles,
    TicketType,
)
from simulator.streams import CityStreams

P_MIN = 0.001
PEAKED = (0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 3.5, 3.0, 2.5,
          2.0, 2.5, 3.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.6, 0.4, 0.3)


def _within(observed: float, expected: float, se: float, k: float = 4.0) -> bool:
    return abs(observed - expected) <= k * se


def _demand_scenario(h, days: float, *, seed: int = 31, city: dict | None = None, **kw):
    c = {"tickets_per_day": 240.0, "agent_groups": (AgentGroup(name="g", headcount=1),), **(city or {})}
    return h.base_scenario({"Zed": City(**c)}, horizon_h=24.0 * days, seed=seed, **kw)


def _counts(arr, days: int) -> np.ndarray:
    """Arrivals per (day, hour)."""
    t = arr["arrival_s"].to_numpy()
    idx = (t // HOUR).astype(int)
    return np.bincount(idx, minlength=days * 24).reshape(days, 24)


# -- counts -----------------------------------------------------------------------------------
def test_hourly_counts_follow_the_profile_and_are_poisson(h):
    days = 150
    sc = _demand_scenario(h, days, profiles=Profiles(hour_of_day=PEAKED))
    n = _counts(h.sampled_arrivals(sc, "Zed", sc.seed), days)
    w = np.array(PEAKED) / np.mean(PEAKED)
    expected = 240.0 / 24.0 * w  # per hour of one day
    for hour in range(24):
        se = np.sqrt(expected[hour] / days)
        assert _within(n[:, hour].mean(), expected[hour], se), (hour, n[:, hour].mean(), expected[hour])
    # Poisson: variance equals the mean (dispersion test over all cells)
    chi2 = (((n - expected) ** 2) / expected).sum()
    dof = n.size
    p = stats.chi2.sf(chi2, dof)
    assert P_MIN < p < 1 - P_MIN, (chi2, dof)
    ratio = n.var(axis=0, ddof=1) / n.mean(axis=0)
    assert 0.8 < np.median(ratio) < 1.2


def test_day_of_week_profile_and_start_weekday(h):
    """Weekends at half volume, the horizon starting on a Saturday."""
    weeks = 20
    dow = (1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5)
    sc = _demand_scenario(h, 7 * weeks, profiles=Profiles(day_of_week=dow), start_weekday="sat")
    n = _counts(h.sampled_arrivals(sc, "Zed", sc.seed), 7 * weeks).sum(axis=1)
    per_weekday = n.reshape(weeks, 7).mean(axis=0)  # columns: sat, sun, mon, ..., fri
    w = np.array(dow) / np.mean(dow)
    expected = 240.0 * np.roll(w, 2)  # sat first
    for i in range(7):
        assert _within(per_weekday[i], expected[i], np.sqrt(expected[i] / weeks)), (i, per_weekday, expected)


def test_volume_cv_gives_poisson_gamma_overdispersion(h):
    days, lam, cv = 400, 240.0, 0.3
    sc = _demand_scenario(h, days, city={"volume_cv": cv, "tickets_per_day": lam})
    n = _counts(h.sampled_arrivals(sc, "Zed", sc.seed), days).sum(axis=1)
    var_theory = lam + (lam * cv) ** 2  # negative binomial: Poisson + gamma day multiplier
    assert _within(n.mean(), lam, np.sqrt(var_theory / days))
    assert n.var(ddof=1) / n.mean() > 5.0  # Poisson alone would give 1
    cv_hat = np.sqrt(max(n.var(ddof=1) - n.mean(), 0.0)) / n.mean()
    assert 0.25 < cv_hat < 0.35, cv_hat
    # without volume_cv the same days are Poisson
    sc0 = _demand_scenario(h, days, city={"tickets_per_day": lam})
    n0 = _counts(h.sampled_arrivals(sc0, "Zed", sc0.seed), days).sum(axis=1)
    p = stats.chi2.sf(((n0 - lam) ** 2 / lam).sum(), days)
    assert P_MIN < p < 1 - P_MIN


def test_arrival_times_are_uniform_within_each_hour(h):
    days = 40
    sc = _demand_scenario(h, days, profiles=Profiles(hour_of_day=PEAKED))
    t = h.sampled_arrivals(sc, "Zed", sc.seed)["arrival_s"].to_numpy()
    assert np.all(np.diff(t) >= 0), "arrivals are sorted"
    frac = (t % HOUR) / HOUR
    assert stats.kstest(frac, "uniform").pvalue > P_MIN
    # and within the quietest hours too (a sampler that drifts toward hour ends fails here)
    quiet = frac[(t % DAY) < 5 * HOUR]
    assert len(quiet) > 50
    assert stats.kstest(quiet, "uniform").pvalue > P_MIN


def test_a_short_busy_hour_gets_its_volume(h):
    """One hour at 50x: sampling gaps at the current rate would skip most of it; counts do not."""
    days = 30
    prof = [1.0] * 24
    prof[10] = 50.0
    sc = _demand_scenario(h, days, city={"tickets_per_day": 146.0}, profiles=Profiles(hour_of_day=tuple(prof)))
    n = _counts(h.sampled_arrivals(sc, "Zed", sc.seed), days)
    busy = 146.0 * 50.0 / 73.0  # 100 an hour
    assert _within(n[:, 10].mean(), busy, np.sqrt(busy / days)), n[:, 10].mean()
    quiet = np.delete(n, 10, axis=1)
    assert _within(quiet.mean(), 2.0, np.sqrt(2.0 / quiet.size))
    # the engine sees every one of them
    one_day = _demand_scenario(h, 1, city={"tickets_per_day": 146.0, "agent_groups": (AgentGroup(name="g", headcount=400),)},
                               profiles=Profiles(hour_of_day=tuple(prof)), chatbot=Chatbot(channels=()))
    r = simulate(one_day).records
    prim = r[r["kind"] == "primary"]
    sampled = h.sampled_arrivals(one_day, "Zed", one_day.seed)
    def in10(t):
        return ((t >= 10 * HOUR) & (t < 11 * HOUR)).sum()

    assert in10(prim["arrival_s"]) == in10(sampled["arrival_s"]) > 60


def test_horizon_cuts_the_last_day(h):
    sc = _demand_scenario(h, 2.5)
    t = h.sampled_arrivals(sc, "Zed", sc.seed)["arrival_s"].to_numpy()
    assert t.max() < sc.horizon_s
    assert _within((t >= 2 * DAY).sum(), 120.0, np.sqrt(120.0))


# -- per-ticket durations ---------------------------------------------------------------------
def test_lognormal_handle_times_have_the_configured_mean_and_cv(h):
    """complex on phone: lognormal(600 s, cv 0.7); on email the exponential(420 s) override."""
    sc = _demand_scenario(h, 60)
    a = h.sampled_arrivals(sc, "Zed", sc.seed)
    x = a.loc[(a["ticket_type"] == "complex") & (a["channel"] == "phone"), "handle_s"].to_numpy()
    assert len(x) > 1500
    mean, cv = 600.0, 0.7
    assert _within(x.mean(), mean, mean * cv / np.sqrt(len(x))), x.mean()
    sigma = np.sqrt(np.log1p(cv**2))
    mu = np.log(mean) - sigma**2 / 2
    logs = np.log(x)
    assert _within(logs.std(ddof=1), sigma, sigma / np.sqrt(2 * len(x)))
    assert _within(logs.mean(), mu, sigma / np.sqrt(len(x)))
    assert stats.kstest(logs, "norm", args=(mu, sigma)).pvalue > P_MIN
    cv_hat = x.std(ddof=1) / x.mean()
    assert 0.6 < cv_hat < 0.8, cv_hat

    e = a.loc[(a["ticket_type"] == "complex") & (a["channel"] == "email"), "handle_s"].to_numpy()
    assert len(e) > 500
    assert stats.kstest(e, "expon", args=(0, 420.0)).pvalue > P_MIN
    s = a.loc[a["ticket_type"] == "simple", "handle_s"].to_numpy()
    assert stats.kstest(s, "expon", args=(0, 240.0)).pvalue > P_MIN


def test_patience_draws(h):
    sc = _demand_scenario(h, 40)
    a = h.sampled_arrivals(sc, "Zed", sc.seed)
    pat = a["deadline_s"] - a["arrival_s"]
    phone = pat[a["channel"] == "phone"].to_numpy()
    assert len(phone) > 2000
    assert stats.kstest(phone, "expon", args=(0, 240.0)).pvalue > P_MIN
    assert _within(phone.mean(), 240.0, 240.0 / np.sqrt(len(phone)))
    chat = pat[a["channel"] == "chat"].to_numpy()
    sigma = np.sqrt(np.log1p(0.8**2))
    assert stats.kstest(np.log(chat), "norm", args=(np.log(300.0) - sigma**2 / 2, sigma)).pvalue > P_MIN
    assert np.isinf(pat[a["channel"] == "email"]).all()  # asynchronous: nobody hangs up


# -- mixes ------------------------------------------------------------------------------------
def _gof(observed_labels, shares: dict[str, float]) -> float:
    labels = list(shares)
    obs = np.array([(observed_labels == k).sum() for k in labels])
    assert obs.sum() == len(observed_labels), "a label outside the mix"
    exp = np.array([shares[k] for k in labels]) * obs.sum()
    return stats.chisquare(obs, exp).pvalue


def test_channel_type_tier_and_language_shares_match_the_mixes(h):
    city = {
        "channel_mix": {"phone": 0.2, "chat": 0.5, "email": 0.3},  # the city's own mixes win
        "type_mix": {"simple": 0.4, "complex": 0.6},
        "tier_mix": {"gold": 0.35, "std": 0.65},
        "languages": {"tajik": 0.15, "uzbek": 0.1},
    }
    sc = _demand_scenario(h, 30, city=city)
    a = h.sampled_arrivals(sc, "Zed", sc.seed)
    assert len(a) > 6000
    assert _gof(a["channel"].to_numpy(), city["channel_mix"]) > P_MIN
    assert _gof(a["ticket_type"].to_numpy(), city["type_mix"]) > P_MIN
    assert _gof(a["tier"].to_numpy(), city["tier_mix"]) > P_MIN
    lang = a["language"].fillna("none").to_numpy()
    assert _gof(lang, {"tajik": 0.15, "uzbek": 0.1, "none": 0.75}) > P_MIN
    # attributes are independent of each other: channel x tier contingency table
    tab = np.array([[((a["channel"] == c) & (a["tier"] == t)).sum() for t in ("gold", "std")]
                    for c in ("phone", "chat", "email")])
    assert stats.chi2_contingency(tab).pvalue > P_MIN
    # the top-level mixes apply when the city has none
    sc2 = _demand_scenario(h, 30)
    b = h.sampled_arrivals(sc2, "Zed", sc2.seed)
    assert _gof(b["channel"].to_numpy(), {"phone": 0.5, "chat": 0.3, "email": 0.2}) > P_MIN
    assert _gof(b["tier"].to_numpy(), {"gold": 0.2, "std": 0.8}) > P_MIN


def test_surge_scales_one_type_and_leaves_the_others(h):
    days = 40
    base = _demand_scenario(h, days)
    surged = _demand_scenario(h, days, city={"surge": {"complex": 1.4}})
    a = h.sampled_arrivals(base, "Zed", base.seed)
    b = h.sampled_arrivals(surged, "Zed", surged.seed)
    lam = 240.0 * days
    for frame, factor in ((a, 1.0), (b, 1.4)):
        n_complex = (frame["ticket_type"] == "complex").sum()
        n_simple = (frame["ticket_type"] == "simple").sum()
        e_complex, e_simple = lam * 0.35 * factor, lam * 0.65
        assert _within(n_complex, e_complex, np.sqrt(e_complex)), (factor, n_complex, e_complex)
        assert _within(n_simple, e_simple, np.sqrt(e_simple)), (factor, n_simple, e_simple)
    ratio = (b["ticket_type"] == "complex").sum() / (a["ticket_type"] == "complex").sum()
    assert 1.3 < ratio < 1.5


def test_chatbot_outage_and_retry_draws(h):
    city = {"chatbot_penetration": 0.4, "tickets_per_day": 960.0}
    sc = _demand_scenario(
        h, 20, city=city,
        outages=(Outage(start_h=30.0, duration_h=6.0, loss_probability=0.7),),
    )
    a = h.sampled_arrivals(sc, "Zed", sc.seed)
    eligible = (a["ticket_type"] == "simple") & a["channel"].isin(["chat", "email"])
    assert not a.loc[~eligible, "deflected"].any()
    n = eligible.sum()
    assert _within(a.loc[eligible, "deflected"].mean(), 0.4, np.sqrt(0.24 / n))
    t = a["arrival_s"]
    inside = (t >= 30 * HOUR) & (t < 36 * HOUR)
    assert not a.loc[~inside, "lost"].any()
    m = inside.sum()
    assert m > 200
    assert _within(a.loc[inside, "lost"].mean(), 0.7, np.sqrt(0.21 / m))


def test_retry_flags_follow_the_channel_probability(h):
    sc = _demand_scenario(h, 20)
    book = codebook(sc)
    d = CityDemand(sc, "Zed", book.languages)
    rng = CityStreams(sc.seed, "run", 0, "Zed")
    ch, retry = [], []
    for day in d.days(rng):
        ch += day.channel
        retry += day.retry
    ch, retry = np.array(ch), np.array(retry)
    phone = d.channels.index("phone")
    assert not retry[ch != phone].any()
    n = (ch == phone).sum()
    assert _within(retry[ch == phone].mean(), 0.3, np.sqrt(0.21 / n))


def test_language_shares_summing_to_one_are_accepted(h):
    langs = {"a": 0.2, "b": 0.4, "c": 0.3, "d": 0.1}  # validation accepts a sum of 1
    sc = _demand_scenario(h, 5, city={"languages": langs})
    a = h.sampled_arrivals(sc, "Zed", sc.seed)
    assert a["language"].notna().all()
    assert _gof(a["language"].to_numpy(), langs) > P_MIN


def test_channel_without_any_share_gets_no_arrivals(h):
    sc = _demand_scenario(h, 3, channel_mix={"phone": 1.0},
                          channels={"phone": Channel(synchronous=True, target_s=60.0),
                                    "chat": Channel(synchronous=True, target_s=30.0),
                                    "email": Channel(synchronous=False, target_s=HOUR)})
    a = h.sampled_arrivals(sc, "Zed", sc.seed)
    assert set(a["channel"]) == {"phone"}
    assert set(a["ticket_type"]) == {"simple", "complex"}


def test_handle_time_override_types(h):
    """A type without overrides uses its default on every channel (exponential 240 s)."""
    sc = _demand_scenario(h, 10, ticket_types={
        "simple": TicketType(handle=HandleTime(default=h.exp(240.0))),
        "complex": TicketType(handle=HandleTime(default=h.exp(900.0), by_channel={"chat": h.exp(60.0)})),
    })
    a = h.sampled_arrivals(sc, "Zed", sc.seed)
    for (ty, ch), mean in {("complex", "chat"): 60.0, ("complex", "phone"): 900.0, ("simple", "chat"): 240.0}.items():
        x = a.loc[(a["ticket_type"] == ty) & (a["channel"] == ch), "handle_s"].to_numpy()
        assert len(x) > 100
        assert stats.kstest(x, "expon", args=(0, mean)).pvalue > P_MIN, (ty, ch)
