"""The answer parser: tolerant of case and whitespace, strict about structure."""

import pytest

from agentgen.agent.parser import format_response, parse_response


@pytest.mark.parametrize("text,action", [
    ("<think>box is left</think><action>Left</action>", "Left"),
    ("  <THINK> x </Think>\n<Action>  Up </ACTION>  ", "Up"),
    ("<think>a\nb</think><action>go to   cabinet 1</action>", "go to cabinet 1"),
    ("<think>t</think><action>Up</action><|im_end|>", "Up"),  # anything after </action> is cut
])
def test_think_format_accepted(text, action):
    p = parse_response(text, think=True)
    assert p.format_ok and p.action == action


@pytest.mark.parametrize("text", [
    "<action>Up</action>",  # thinking required
    "Up",
    "<think>t</think>",
    "<think>t</think><action></action>",
    "<think>t<action>Up</action></think><action>Up</action>",
    "<think>t</think> and then <action>Up</action>",
])
def test_think_format_rejected(text):
    p = parse_response(text, think=True)
    assert not p.format_ok and p.action is None


def test_no_think_format():
    assert parse_response("<action> Down</action>", think=False).action == "Down"
    assert parse_response("<think>x</think><action>Down</action>", think=False).action is None
    assert parse_response("Down", think=False).action is None


def test_format_response_round_trip():
    for think in (True, False):
        text = format_response("Right", "plan: Right", think)
        p = parse_response(text, think)
        assert p.action == "Right" and (p.thought == "plan: Right" if think else p.thought is None)
