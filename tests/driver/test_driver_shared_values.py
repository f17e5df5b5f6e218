"""Branches share key and value objects; the driver names an operator that mutates one in
place (issue 15, point 5). The rule: operators return new values (as Kafka Streams' do)."""

from __future__ import annotations

from typing import Any

import pytest

from kstream import StreamBuilder
from kstream.runtime.shared_values import SharedValueMutatedError
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde


def tag(value: dict[str, Any]) -> dict[str, Any]:
    value["tagged"] = True  # in place: the other branch would see it
    return value


def two_branches(first: Any) -> StreamBuilder:
    b = StreamBuilder()
    s = b.stream("in", StringSerde(), JsonSerde())
    s.map_values(first).to("a", StringSerde(), JsonSerde())
    s.to("b", StringSerde(), JsonSerde())
    return b


@pytest.mark.parametrize("fusion", [True, False])
def test_a_branch_that_mutates_the_shared_value_is_named(fusion: bool) -> None:
    driver = TopologyTestDriver(two_branches(tag), fusion=fusion)
    with driver, pytest.raises(SharedValueMutatedError, match=r"changed the value .*in place"):
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("k", {"n": 1})


@pytest.mark.parametrize("fusion", [True, False])
def test_returning_a_new_value_passes(fusion: bool) -> None:
    with TopologyTestDriver(two_branches(lambda v: {**v, "tagged": True}),
                            fusion=fusion) as driver:
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("k", {"n": 1})
        assert driver.output_topic("a", StringSerde(), JsonSerde()).read_value() == \
            {"n": 1, "tagged": True}
        assert driver.output_topic("b", StringSerde(), JsonSerde()).read_value() == {"n": 1}


def test_split_branches_are_checked_and_the_check_can_be_turned_off() -> None:
    def build() -> StreamBuilder:
        b = StreamBuilder()
        branches = (b.stream("in", StringSerde(), JsonSerde()).split()
                    .branch(lambda _k, v: v["n"] > 0, "pos").default_branch("rest"))
        for name, stream in branches.items():
            stream.peek(lambda _k, v: v.setdefault("seen", 1)).to(
                f"out-{name}", StringSerde(), JsonSerde())
        return b

    # split() sends each record to one branch: no sharing, nothing to flag.
    with TopologyTestDriver(build()) as driver:
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("k", {"n": 1})
    with TopologyTestDriver(two_branches(tag), check_shared_values=False) as driver:
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("k", {"n": 1})
        # Without the check the mutation leaks into the other branch: what the check prevents.
        assert driver.output_topic("b", StringSerde(), JsonSerde()).read_value() == \
            {"n": 1, "tagged": True}
