"""Stage 7 of 7 (plan): the decisions per city, their monthly cost, and the scenario they make.

A ``Plan`` holds, per city, seats added on each candidate shift pattern (permanent and
temporary), agents taught the city's local language(s) and agents certified one level up
(both per *pool*: an existing agent group by name, or ``hire:<pattern>`` / ``temp:<pattern>``
for the new seats), the chatbot penetration in effect and whether triage is on.
``apply_plan(scenario, plan)`` turns it into the scenario the simulator verifies:

* new groups ``hire_<pattern>`` (employment ``full_time``) and ``temp_<pattern>``
  (employment ``temporary``; added as a copy of ``full_time`` when the scenario has none,
  an assumption recorded in ``assumptions``), certification 1, no local language;
* in every pool, ``trained`` agents gain the city's local languages and ``certified``
  agents gain one certification level; they split off as groups named ``<pool>+<lang>``,
  ``<pool>+cert`` and ``<pool>+<lang>+cert`` (overlap only when trained + certified exceed
  the pool), the rest keep the pool's name;
* ``chatbot_penetration`` set; triage on turns a ``fifo`` city into ``skills`` (with a local
  language) or ``priority`` (without); richer policies are left as they are.

Costs in yuan per month: seats at their pattern's rate (see ``inputs.seat_factor``), training
and certification once per agent within the month, the chatbot level's monthly cost (the
city's current penetration costs nothing) and ``triage_cost`` where triage is switched on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from optimizer.inputs import PERMANENT, TEMPORARY, seat_factor
from simulator.scenario import AgentGroup, Employment, Scenario

__all__ = ["CityPlan", "Plan", "apply_plan", "city_costs", "local_languages"]


@dataclass(frozen=True)
class CityPlan:
    """One city's decisions (counts are agents, or seats for hires and temporaries)."""

    city: str
    hires: Mapping[str, int] = field(default_factory=dict)  # pattern -> permanent seats
    temporaries: Mapping[str, int] = field(default_factory=dict)  # pattern -> temporary seats
    trained: Mapping[str, int] = field(default_factory=dict)  # pool -> agents taught the language
    certified: Mapping[str, int] = field(default_factory=dict)  # pool -> agents certified +1
    chatbot_penetration: float | None = None  # None: unchanged
    triage: bool = False  # on after the plan (True also where it already was)

    def heads(self, pool: str, existing: int = 0) -> int:
        """Agents in ``pool`` after the plan (seats for new pools)."""
        if pool.startswith("hire:"):
            return int(self.hires.get(pool[5:], 0))
        if pool.startswith("temp:"):
            return int(self.temporaries.get(pool[5:], 0))
        return existing

    @property
    def is_empty(self) -> bool:
        return not any(
            v for m in (self.hires, self.temporaries, self.trained, self.certified) for v in m.values()
        )

    def key(self) -> tuple:
        """A hashable summary: equal keys mean the same simulated scenario for this city."""
        norm = lambda m: tuple(sorted((k, int(v)) for k, v in m.items() if v))
        return (norm(self.hires), norm(self.temporaries), norm(self.trained), norm(self.certified),
                None if self.chatbot_penetration is None else round(self.chatbot_penetration, 9),
                self.triage)


def local_languages(scenario: Scenario, city: str) -> tuple[str, ...]:
    """The languages a city's tickets need (share above zero), sorted."""
    return tuple(sorted(k for k, v in scenario.cities[city].languages.items() if v > 0))


def city_costs(scenario: Scenario, cp: CityPlan) -> dict[str, float]:
    """Monthly cost of a city's plan by item (yuan)."""
    pl = scenario.planning
    if cp.city not in scenario.cities:
        raise ValueError(f"plan names an unknown city '{cp.city}'")
    c = scenario.cities[cp.city]
    for p in list(cp.hires) + list(cp.temporaries):
        if p not in pl.shift_patterns:
            raise ValueError(f"{cp.city}: unknown shift pattern '{p}' (planning.shift_patterns: "
                             f"{sorted(pl.shift_patterns)})")
    hires = sum(n * pl.hire_cost_per_month * seat_factor(pl.shift_patterns[p], pl.agent_hours_per_month)
                for p, n in cp.hires.items())
    temps = sum(n * pl.temporary_cost_per_month * seat_factor(pl.shift_patterns[p], pl.agent_hours_per_month)
                for p, n in cp.temporaries.items())
    chatbot = 0.0
    pen = cp.chatbot_penetration
    if pen is not None and pen > c.chatbot_penetration + 1e-9:
        level = [lv for lv in pl.chatbot_levels if abs(lv.penetration - pen) < 1e-9]
        if not level:
            raise ValueError(f"{cp.city}: chatbot penetration {pen} is not one of planning.chatbot_levels")
        chatbot = level[0].cost_per_month
    triage = pl.triage_cost if cp.triage and c.routing.level == 0 else 0.0
    return {
        "hires": float(hires),
        "temporaries": float(temps),
        "training": float(pl.language_training_cost * sum(cp.trained.values())),
        "certification": float(pl.certification_cost_per_level * sum(cp.certified.values())),
        "chatbot": float(chatbot),
        "triage": float(triage),
    }


def plan_cost(scenario: Scenario, cp: CityPlan) -> float:
    """A city plan's total monthly cost (yuan)."""
    return float(sum(city_costs(scenario, cp).values()))


@dataclass(frozen=True)
class Plan:
    """Decisions for every city (cities without a ``CityPlan`` are left unchanged)."""

    cities: Mapping[str, CityPlan]
    costs: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # city -> item -> yuan
    assumptions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, scenario: Scenario, cities: Mapping[str, CityPlan],
              assumptions: Mapping[str, str] | None = None) -> Plan:
        """A plan with its costs computed from the scenario's planning block."""
        return cls(dict(cities), {c: city_costs(scenario, cp) for c, cp in cities.items()},
                   dict(assumptions or {}))

    @property
    def cost(self) -> float:
        """Total monthly cost (yuan)."""
        return float(sum(sum(v.values()) for v in self.costs.values()))

    def city_cost(self, city: str) -> float:
        return float(sum(self.costs.get(city, {}).values()))

    def to_frame(self) -> pd.DataFrame:
        """One row per action: city, action, what (pattern or pool), count, cost (yuan/month)."""
        rows = []
        for city, cp in self.cities.items():
            for action, table in (("hire", cp.hires), ("temporary", cp.temporaries),
                                  ("train_language", cp.trained), ("certify", cp.certified)):
                for what, n in table.items():
                    if n:
                        rows.append((city, action, what, int(n)))
            if cp.chatbot_penetration is not None:
                rows.append((city, "chatbot_penetration", f"{cp.chatbot_penetration:g}", 1))
            rows.append((city, "triage", "on" if cp.triage else "off", 1))
        frame = pd.DataFrame(rows, columns=["city", "action", "what", "count"])
        item = {"hire": "hires", "temporary": "temporaries", "train_language": "training",
                "certify": "certification", "chatbot_penetration": "chatbot", "triage": "triage"}
        pl_cost = []
        for r in frame.itertuples():
            c = self.costs.get(r.city, {})
            if r.action in ("hire", "temporary", "train_language", "certify"):
                table = getattr(self.cities[r.city], {"hire": "hires", "temporary": "temporaries",
                                                       "train_language": "trained",
                                                       "certify": "certified"}[r.action])
                total = sum(table.values())
                pl_cost.append(c.get(item[r.action], 0.0) * r.count / total if total else 0.0)
            else:
                pl_cost.append(c.get(item[r.action], 0.0))
        frame["cost_per_month"] = pl_cost
        return frame


# ---------------------------------------------------------------------------- apply
def _split(g: AgentGroup, trained: int, certified: int, langs: tuple[str, ...]) -> list[AgentGroup]:
    """Split a group into (rest, +lang, +cert, +lang+cert) by the plan's counts."""
    h = g.headcount
    if trained > h or certified > h or trained < 0 or certified < 0:
        raise ValueError(f"group {g.name}: {trained} trained / {certified} certified of {h} agents")
    if certified and g.certification >= 5:
        raise ValueError(f"group {g.name}: certification is already at the top level 5")
    both = max(0, trained + certified - h)
    t_only, c_only = trained - both, certified - both
    new_langs = tuple(sorted(set(g.languages) | set(langs)))
    tag = "+".join(langs)
    out = [g.model_copy(update={"headcount": h - t_only - c_only - both})]
    for n, suffix, lg, up in ((t_only, f"+{tag}", new_langs, 0), (c_only, "+cert", g.languages, 1),
                              (both, f"+{tag}+cert", new_langs, 1)):
        if n:
            out.append(AgentGroup(name=g.name + suffix, headcount=n, shift=g.shift,
                                  employment=g.employment, languages=tuple(lg),
                                  certification=g.certification + up))
    return out


def _city_groups(sc: Scenario, cp: CityPlan) -> list[AgentGroup]:
    c = sc.cities[cp.city]
    langs = local_languages(sc, cp.city)
    known = {g.name for g in c.agent_groups}
    pools = set(cp.trained) | set(cp.certified)
    for p in pools:
        if not (p in known or p.startswith(("hire:", "temp:"))):
            raise ValueError(f"{cp.city}: unknown pool '{p}' (groups: {sorted(known)})")
    if any(cp.trained.values()) and not langs:
        raise ValueError(f"{cp.city}: agents trained but the city needs no local language")
    groups: list[AgentGroup] = []
    for g in c.agent_groups:
        groups += _split(g, cp.trained.get(g.name, 0), cp.certified.get(g.name, 0), langs)
    for prefix, table, emp in (("hire", cp.hires, PERMANENT), ("temp", cp.temporaries, TEMPORARY)):
        for p, n in table.items():
            if p not in sc.planning.shift_patterns:
                raise ValueError(f"{cp.city}: unknown shift pattern '{p}'")
            if n < 0:
                raise ValueError(f"{cp.city}: negative seats on '{p}'")
            if not n:
                continue
            name = f"{prefix}_{p}"
            while name in known:
                name += "_new"
            base = AgentGroup(name=name, headcount=int(n), shift=sc.planning.shift_patterns[p],
                              employment=emp, certification=1)
            key = f"{prefix}:{p}"
            groups += _split(base, cp.trained.get(key, 0), cp.certified.get(key, 0), langs)
    for key in pools:
        if key.startswith(("hire:", "temp:")) and not cp.heads(key) and (cp.trained.get(key) or cp.certified.get(key)):
            raise ValueError(f"{cp.city}: pool '{key}' has no seats to train or certify")
    return groups


def apply_plan(scenario: Scenario, plan: Plan) -> Scenario:
    """The scenario with the plan's decisions made (validated again, unknown names rejected)."""
    data = scenario.model_dump()
    notes = dict(plan.assumptions)
    uses_temp = any(v for cp in plan.cities.values() for v in cp.temporaries.values())
    if uses_temp and TEMPORARY not in scenario.employment:
        base = scenario.employment.get(PERMANENT, Employment())
        data["employment"][TEMPORARY] = base.model_dump()
        notes["plan.temporary"] = "employment 'temporary' added as a copy of 'full_time' (assumption)"
    for city, cp in plan.cities.items():
        if city not in scenario.cities:
            raise ValueError(f"plan names an unknown city '{city}'")
        c = scenario.cities[city]
        cd = data["cities"][city]
        cd["agent_groups"] = [g.model_dump() for g in _city_groups(scenario, cp)]
        if cp.chatbot_penetration is not None:
            if cp.chatbot_penetration < c.chatbot_penetration - 1e-9:
                raise ValueError(f"{city}: a plan does not lower the chatbot penetration")
            cd["chatbot_penetration"] = cp.chatbot_penetration
        if cp.triage and c.routing.level == 0:
            cd["routing"]["policy"] = "skills" if local_languages(scenario, city) else "priority"
    data["name"] = f"{scenario.name}+plan"
    data["assumptions"] = {**data.get("assumptions", {}), **notes}
    return Scenario.model_validate(data)
