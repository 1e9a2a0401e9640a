"""Several prompts in one demo request: each row keeps its prompt, and a row is the same alone or in the batch."""

import pytest

from discdiff.serve import RequestError


def run(engine, payload):
    events = []
    engine.run(engine.parse(payload), lambda kind, data: events.append((kind, data)), lambda: None)
    return events


def test_prompts_of_different_lengths_share_a_batch(char_engine):
    done = run(char_engine, {"prompts": ["to be", "or"], "length": 12, "steps": 6, "seed": 5})
    start, final = done[0][1], done[-1][1]
    assert start["num_samples"] == 2 and [sum(k) for k in start["known_rows"]] == [5, 2]
    assert final["text"][0].startswith("to be") and final["text"][1].startswith("or")
    alone = run(char_engine, {"prompts": ["to be"], "length": 12, "steps": 6, "seed": 5})[-1][1]
    assert alone["text"][0] == final["text"][0]  # row 0: its own seed, its own prompt


@pytest.mark.parametrize("payload,message", [
    ({"prompts": ["a"]}, "prompts need a length"),
    ({"prompts": [], "length": 8}, "non-empty list"),
    ({"prompts": ["to", ""], "length": 8}, "non-empty list"),
    ({"prompts": ["to"], "template": "to {3}", "length": 8}, "without a template"),
    ({"prompts": ["t", "o"], "num_samples": 2, "length": 8}, "exceed 3 rows"),
])
def test_bad_prompts_are_refused(char_engine, payload, message):
    with pytest.raises(RequestError, match=message):
        char_engine.parse(payload)
