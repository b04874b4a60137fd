"""Tests for ``simulator.loader``: safe YAML, base + patch merging, overrides, error messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from simulator.loader import ScenarioError, dump_scenario, load_scenario

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny.yaml"


def groups(sc, city: str) -> dict[str, int]:
    return {g.name: g.headcount for g in sc.cities[city].agent_groups}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A private copy of tiny.yaml, so tests can put what-if files next to it."""
    return Path(shutil.copy(TINY, tmp_path / "tiny.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- merging ---------------------------------------------------------------------------------
def test_plain_file_loads() -> None:
    sc = load_scenario(TINY)
    assert sc.name == "tiny"
    assert groups(sc, "Urumqi") == {"ft_day": 3, "uyghur": 1}


def test_patch_merges_named_items_by_name() -> None:
    base, sc = load_scenario(TINY), load_scenario(DATA / "tiny_whatif.yaml")
    assert sc.name == "tiny-more-agents"  # top-level name replaces the base's
    assert sc.replications == 3
    # patched group changed, new group appended, the untouched group kept as it was
    assert list(groups(sc, "Urumqi").items()) == [
        ("ft_day", 5),
        ("uyghur", 1),
        ("uyghur_evening", 2),
    ]
    assert sc.cities["Urumqi"].agent_groups[1] == base.cities["Urumqi"].agent_groups[1]
    assert sc.cities["Urumqi"].agent_groups[2].shift.start_h == 12
    # the patch merged into ft_day: fields it did not name keep the base's values
    assert sc.cities["Urumqi"].agent_groups[0].shift == base.cities["Urumqi"].agent_groups[0].shift
    # everything else is the base's
    assert sc.cities["Lanzhou"] == base.cities["Lanzhou"]
    assert sc.channels == base.channels and sc.ticket_types == base.ticket_types


def test_what_if_of_a_what_if() -> None:
    sc = load_scenario(DATA / "tiny_chain.yaml")
    assert sc.description == "chained what-if"
    assert sc.cities["Lanzhou"].tickets_per_day == 700
    assert groups(sc, "Urumqi")["uyghur_evening"] == 2


def test_plain_lists_and_scalars_replace(tiny: Path) -> None:
    f = write(
        tiny.parent / "w.yaml",
        "base: tiny.yaml\npatch:\n  chatbot: {channels: [phone]}\n"
        "  channel_mix: {phone: 1.0, email: 0.0}\n",
    )
    sc = load_scenario(f)
    assert sc.chatbot.channels == ("phone",)
    assert sc.channel_mix == {"phone": 1.0, "email": 0.0}


# -- overrides -------------------------------------------------------------------------------
def test_overrides_by_name_index_and_top_level() -> None:
    sc = load_scenario(
        TINY,
        [
            "cities.Urumqi.agent_groups.ft_day.headcount=24",
            "cities.Lanzhou.agent_groups.1.headcount=7",
            "replications=4",
            "chatbot.channels=[phone, email]",  # values are YAML
        ],
    )
    assert groups(sc, "Urumqi")["ft_day"] == 24
    assert groups(sc, "Lanzhou")["pt_day"] == 7
    assert sc.replications == 4
    assert sc.chatbot.channels == ("phone", "email")


def test_override_fills_a_block_the_file_left_out() -> None:
    sc = load_scenario(
        TINY,
        [
            "resolution.max_attempts=2",
            "cities.Urumqi.agent_groups.ft_day.shift.length_h=12",
            "employment.full_time.cost_per_hour=55",  # a defaulted mapping of blocks
        ],
    )
    assert sc.resolution.max_attempts == 2
    assert sc.resolution.recontact_probability == 0.7  # the rest of the block: defaults
    shift = sc.cities["Urumqi"].agent_groups[0].shift
    assert (shift.start_h, shift.length_h) == (0.0, 12.0)
    assert sc.employment["full_time"].cost_per_hour == 55
    assert sc.employment["full_time"].handle_factor == 1.0


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("cities.Atlantis.tickets_per_day=5", "cities.Atlantis.tickets_per_day", "does not exist"),
        ("cities.Urumqi.agent_groups.night.headcount=5", "agent_groups.night", "ft_day, uyghur"),
        ("cities.Urumqi.tickets_per_day.x=1", "tickets_per_day.x", "is a value"),
        ("replications", "replications", "KEY=VALUE"),
        ("replicatons=3", "replicatons", "did you mean 'replications'"),
        ("cities.Urumqi.agent_groups.ft_day.headcount=-3", "agent_groups.ft_day.headcount", ">= 0"),
    ],
)
def test_bad_overrides_name_set_and_the_field(override: str, field: str, words: str) -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario(TINY, [override])
    assert e.value.file == "--set"
    assert field in e.value.field + str(e.value)
    assert words in str(e.value)


# -- paths -----------------------------------------------------------------------------------
def test_relative_paths_resolve_against_the_file_that_set_them(tmp_path: Path, tiny: Path) -> None:
    assert load_scenario(TINY).satisfaction.parameters_file == str(
        DATA / "params" / "satisfaction.json"
    )
    sub = tmp_path / "whatifs"
    sub.mkdir()
    f = write(
        sub / "w.yaml", "base: ../tiny.yaml\npatch:\n  satisfaction: {parameters_file: fit.json}\n"
    )
    assert load_scenario(f).satisfaction.parameters_file == str(sub / "fit.json")
    sc = load_scenario(tiny, ["satisfaction.parameters_file=x/p.json"])
    assert sc.satisfaction.parameters_file == str(Path.cwd() / "x" / "p.json")


def test_dump_loads_back_to_the_same_model(tmp_path: Path) -> None:
    sc = load_scenario(DATA / "tiny_chain.yaml")
    text = dump_scenario(sc)
    assert yaml.safe_load(text)["name"] == "tiny-more-agents"
    assert load_scenario(write(tmp_path / "resolved.yaml", text)) == sc


# -- errors ----------------------------------------------------------------------------------
def test_error_names_file_field_value_and_fix(tiny: Path) -> None:
    write(
        tiny,
        tiny.read_text().replace(
            "{name: ft_day, headcount: 3}", "{name: ft_day, headcount: -3}", 1
        ),
    )
    with pytest.raises(ScenarioError) as e:
        load_scenario(tiny)
    err = e.value
    assert (err.field, err.file.endswith("tiny.yaml")) == (
        "cities.Lanzhou.agent_groups.ft_day.headcount",
        True,
    )
    assert str(err).endswith(
        "cities.Lanzhou.agent_groups.ft_day.headcount: Input should be greater than or equal to 0 "
        "(got -3). Fix: use a value >= 0"
    )
    assert "\n" not in str(err)


def test_unknown_key_lists_the_allowed_fields(tiny: Path) -> None:
    write(tiny, tiny.read_text().replace("tickets_per_day: 600", "tickets_per_dya: 600"))
    with pytest.raises(ScenarioError) as e:
        load_scenario(tiny)
    text = str(e.value)
    assert (
        "cities.Lanzhou.tickets_per_dya: unknown field. Fix: did you mean 'tickets_per_day'?"
        in text
    )
    assert "Allowed here: lat, lon, tickets_per_day" in text
    assert "cities.Lanzhou.tickets_per_day: Field required" in text  # every problem, one per line


def test_errors_blame_the_file_that_set_the_field(tiny: Path) -> None:
    write(
        tiny.parent / "w.yaml",
        "base: tiny.yaml\npatch:\n  cities:\n    Urumqi:\n"
        "      agent_groups:\n        - {name: uyghur, headcount: -1}\n",
    )
    with pytest.raises(ScenarioError) as e:
        load_scenario(tiny.parent / "w.yaml")
    assert (
        e.value.file.endswith("w.yaml")
        and e.value.field == "cities.Urumqi.agent_groups.uyghur.headcount"
    )
    # a field the patch did not touch is blamed on the base
    with pytest.raises(ScenarioError) as e:
        load_scenario(
            tiny.parent / "w.yaml",
            ["cities.Urumqi.agent_groups.uyghur.headcount=1", "cities.Lanzhou.volume_cv=-1"],
        )
    assert e.value.file == "--set"
    write(
        tiny,
        tiny.read_text()
        .replace("volume_cv", "x")
        .replace("tickets_per_day: 500", "tickets_per_day: -1"),
    )
    with pytest.raises(ScenarioError) as e:
        load_scenario(tiny.parent / "w.yaml", ["cities.Urumqi.agent_groups.uyghur.headcount=1"])
    assert e.value.file.endswith("tiny.yaml") and e.value.field == "cities.Urumqi.tickets_per_day"


def test_model_level_errors_point_at_the_field(tiny: Path) -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario(
            tiny, ["cities.Urumqi.routing={policy: overflow, overflow: {to: [Atlantis]}}"]
        )
    assert e.value.field == "cities.Urumqi.routing.overflow.to"
    assert "unknown name 'Atlantis'; allowed: Lanzhou, Urumqi" in e.value.message
    with pytest.raises(ScenarioError) as e:
        load_scenario(tiny, ["cities.Urumqi.channel_mix={phone: 0.5}"])
    assert e.value.field == "cities.Urumqi.channel_mix" and "must sum to 1" in e.value.message


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    f = write(tmp_path / "evil.yaml", f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ScenarioError) as e:
        load_scenario(f)
    assert e.value.field == "name" and "line 1, column 7" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("name: x\ncities: {A: [1,\n", "", "malformed YAML at line"),
        ("- just\n- a list\n", "", "YAML mapping"),
        ("", "", "empty"),
        ("seed: 1\nseed: 2\n", "seed", "appears twice"),
        ("patch: {seed: 1}\n", "patch", "needs a 'base'"),
        ("base: nothere.yaml\n", "base", "base file not found: "),
        ("base: tiny.yaml\nseed: 3\n", "seed", "move 'seed' under 'patch:'"),
        ("base: bad.yaml\n", "base", "cycle"),
    ],
)
def test_file_level_errors(tiny: Path, text: str, field: str, words: str) -> None:
    f = write(tiny.parent / "bad.yaml", text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(f)
    assert e.value.file.endswith("bad.yaml") and e.value.field == field
    assert words in e.value.message


def test_at_most_five_problems(tiny: Path) -> None:
    write(tiny, "\n".join([f"foo_{i}: 1" for i in range(8)] + [tiny.read_text()]))
    with pytest.raises(ScenarioError) as e:
        load_scenario(tiny)
    lines = str(e.value).splitlines()
    assert len(lines) == 5 and lines[-1].endswith("(and 3 more problems)")
