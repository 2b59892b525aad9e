"""The user, session and agent a span names, in any convention, else its resource's."""

from __future__ import annotations

from typing import Any

from aethermind.semconv import normalize
from aethermind.semconv.record import MAX_NAME_LENGTH

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}


def who(attributes: dict[str, Any], resource: dict[str, Any] | None = None) -> tuple[Any, ...]:
    record = normalize({**CHAT, **attributes}, resource or {"service.name": "app"})
    assert record is not None
    return record.user, record.session, record.agent, record.cut


def test_each_conventions_names() -> None:
    assert who({"user.id": "u", "session.id": "s", "gen_ai.agent.name": "a"}) == (
        "u", "s", "a", False,
    )  # fmt: skip
    assert who({"enduser.id": "u", "gen_ai.conversation.id": "s", "agent.name": "a"})[:3] == (
        "u", "s", "a",
    )  # fmt: skip
    assert who({"langfuse.user.id": "u", "langfuse.session.id": "s"})[:2] == ("u", "s")
    assert who({"llm.user": "u"})[0] == "u"  # OpenAI's request `user`, as OpenLLMetry records it
    assert who({"traceloop.association.properties.user_id": "u"})[0] == "u"


def test_the_first_present_name_wins_and_a_bad_value_falls_through() -> None:
    assert who({"user.id": "first", "enduser.id": "second"})[0] == "first"
    assert who({"user.id": "", "enduser.id": "second"})[0] == "second"
    assert who({"user.id": 42})[0] == "42"  # numeric ids are ids


def test_the_resource_answers_what_the_span_does_not() -> None:
    resource = {"service.name": "app", "user.id": "r-user", "session.id": "r-session"}
    assert who({"user.id": "span-user"}, resource)[:2] == ("span-user", "r-session")


def test_long_values_are_cut_and_say_so() -> None:
    user, _, _, cut = who({"user.id": "x" * (MAX_NAME_LENGTH + 1)})
    assert user == "x" * MAX_NAME_LENGTH and cut
