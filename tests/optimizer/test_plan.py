"""``apply_plan`` turns decisions into exactly the intended scenario; plans cost what they say."""

from __future__ import annotations

import pytest

from optimizer.inputs import seat_factor
from optimizer.plan import CityPlan, Plan, apply_plan, city_costs
from simulator import load_scenario


@pytest.fixture(scope="module")
def small():
    return load_scenario("scenarios/small.yaml")


def _groups(sc, city):
    return {g.name: g for g in sc.cities[city].agent_groups}


def test_apply_plan_makes_exactly_the_intended_groups(small):
    cp = CityPlan(
        "Urumqi",
        hires={"day": 2},
        temporaries={"night": 3},
        trained={"day": 4, "temp:night": 1, "part_time": 8},
        certified={"day": 7, "hire:day": 2},
        chatbot_penetration=0.6,
        triage=True,
    )
    out = apply_plan(small, Plan.build(small, {"Urumqi": cp}))
    g = _groups(out, "Urumqi")
    before = _groups(small, "Urumqi")
    # day (9 agents): 4 trained, 7 certified -> 2 both, 2 language only, 5 certified only, 0 untouched
    assert g["day"].headcount == 0
    assert g["day+uyghur"].headcount == 2 and g["day+uyghur"].languages == ("uyghur",)
    assert g["day+uyghur"].certification == before["day"].certification
    assert g["day+cert"].headcount == 5 and g["day+cert"].certification == before["day"].certification + 1
    assert g["day+cert"].languages == ()
    assert g["day+uyghur+cert"].headcount == 2 and g["day+uyghur+cert"].certification == before["day"].certification + 1
    assert g["part_time+uyghur"].headcount == 8 and g["part_time"].headcount == 0
    assert g["part_time+uyghur"].employment == "part_time" and g["part_time+uyghur"].shift == before["part_time"].shift
    # new seats on the planning patterns, new agents at certification 1
    shift = small.planning.shift_patterns
    assert g["hire_day+cert"].headcount == 2 and g["hire_day+cert"].certification == 2
    assert g["hire_day+cert"].shift == shift["day"] and g["hire_day+cert"].employment == "full_time"
    assert g["temp_night"].headcount == 2 and g["temp_night+uyghur"].headcount == 1
    assert g["temp_night"].employment == "temporary" and g["temp_night"].certification == 1
    assert "temporary" in out.employment and "plan.temporary" in out.assumptions
    # head counts add up; speakers are the old ones plus the trained ones
    total = lambda sc: sum(x.headcount for x in sc.cities["Urumqi"].agent_groups)
    assert total(out) == total(small) + 5
    speakers = sum(x.headcount for x in out.cities["Urumqi"].agent_groups if "uyghur" in x.languages)
    assert speakers == 3 + 4 + 8 + 1
    assert out.cities["Urumqi"].chatbot_penetration == 0.6
    assert out.cities["Urumqi"].routing.policy == "skills"  # triage with a local language
    assert out.cities["Beijing"] == small.cities["Beijing"]  # cities without a plan are untouched


def test_triage_without_a_language_is_priority_and_richer_policies_stay(small, national):
    sc = national()
    out = apply_plan(sc, Plan.build(sc, {"North": CityPlan("North", triage=True)}))
    assert out.cities["North"].routing.policy == "priority"  # it already was: no change, no cost
    assert city_costs(sc, CityPlan("North", triage=True))["triage"] == 0.0
    out = apply_plan(small, Plan.build(small, {"Urumqi": CityPlan("Urumqi", triage=True)}))
    assert out.cities["Urumqi"].routing.policy == "skills"
    assert city_costs(small, CityPlan("Urumqi", triage=True))["triage"] == small.planning.triage_cost


@pytest.mark.parametrize("cp, message", [
    (CityPlan("Urumqi", trained={"day": 10}), "trained"),
    (CityPlan("Urumqi", certified={"nobody": 1}), "unknown pool"),
    (CityPlan("Urumqi", hires={"brunch": 1}), "unknown shift pattern"),
    (CityPlan("Beijing", trained={"early": 1}), "no local language"),
    (CityPlan("Urumqi", trained={"temp:day": 1}), "no seats"),
    (CityPlan("Urumqi", chatbot_penetration=0.1), "does not lower"),
])
def test_apply_plan_rejects_impossible_decisions(small, cp, message):
    with pytest.raises(ValueError, match=message):
        apply_plan(small, Plan.build(small, {cp.city: cp}) if cp.chatbot_penetration is None
                   else Plan({cp.city: cp}))


def test_costs_follow_the_planning_block(small):
    pl = small.planning
    cp = CityPlan("Urumqi", hires={"day": 2}, temporaries={"night": 1}, trained={"day": 3},
                  certified={"day": 1}, chatbot_penetration=0.7, triage=True)
    c = city_costs(small, cp)
    assert c["hires"] == pytest.approx(2 * pl.hire_cost_per_month * seat_factor(pl.shift_patterns["day"], 168.0))
    assert c["temporaries"] == pytest.approx(pl.temporary_cost_per_month * 8 * 7 * 365.25 / 12 / 7 / 168)
    assert c["training"] == 3 * pl.language_training_cost
    assert c["certification"] == pl.certification_cost_per_level
    assert c["chatbot"] == 60_000.0 and c["triage"] == pl.triage_cost
    plan = Plan.build(small, {"Urumqi": cp})
    assert plan.cost == pytest.approx(sum(c.values()))
    frame = plan.to_frame()
    assert frame["cost_per_month"].sum() == pytest.approx(plan.cost)
    assert set(frame["action"]) >= {"hire", "temporary", "train_language", "certify", "chatbot_penetration", "triage"}


def test_plan_keys_identify_simulated_scenarios():
    a = CityPlan("X", temporaries={"day": 2, "late": 0})
    b = CityPlan("X", temporaries={"day": 2})
    assert a.key() == b.key()
    assert a.key() != CityPlan("X", temporaries={"day": 3}).key()
