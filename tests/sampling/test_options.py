"""One option table: the library's checks, the CLI flags and the web request checks all come from it."""

import argparse
from dataclasses import fields

import pytest

import discdiff as dd
from discdiff.sampling import (
    OPTIONS,
    SAMPLERS,
    SamplerOptions,
    add_sampler_arguments,
    check_request_option,
    sampler_options_from_args,
)

from .helpers import toy

TOY = toy()


def parse(*argv):
    parser = argparse.ArgumentParser(prog="discdiff sample")
    add_sampler_arguments(parser)
    return sampler_options_from_args(parser.parse_args(list(argv)))


def test_the_table_is_the_one_source():
    assert {f.name for f in fields(SamplerOptions)} == {n for n, o in OPTIONS.items() if o.goes_to == "loop"}
    assert set(OPTIONS["sampler"].choices) == set(SAMPLERS)
    for opt in OPTIONS.values():
        assert set(opt.samplers) <= set(SAMPLERS) and opt.goes_to in ("front", "predictor", "loop")


@pytest.mark.parametrize("argv, message", [
    (["--sampler", "confidence", "--threshold", "0"], "--threshold must lie in (0, 1), got 0.0"),
    (["--sampler", "confidence", "--threshold", "1"], "--threshold must lie in (0, 1), got 1.0"),
    (["--sampler", "confidence", "--block-length", "0"], "--block-length must be >= 1, got 0"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--top-p", "0"], "--top-p must lie in (0, 1], got 0.0"),
    (["--temperature", "nan"], "--temperature must be finite"),
    (["--guidance", "-1"], "--guidance must be >= 0"),
    (["--sampler", "ddim"], "invalid choice: 'ddim'"),
])
def test_flags_refuse_out_of_range_values_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)
    assert message in capsys.readouterr().err


def test_flags_give_only_what_applies():
    assert parse("--sampler", "confidence", "--threshold", "0.5", "--block-length", "4", "--greedy") == {
        "sampler": "confidence", "steps": 128, "temperature": 1.0, "guidance": 0.0, "guidance_mode": "null",
        "threshold": 0.5,
        "block_length": 4, "greedy": True}
    assert parse() == {"steps": 128, "temperature": 1.0, "guidance": 0.0, "guidance_mode": "null"}  # library picks
    with pytest.raises(ValueError, match="--threshold applies to --sampler confidence only"):
        parse("--threshold", "0.5")
    with pytest.raises(ValueError, match="--block-length applies to --sampler confidence only"):
        parse("--sampler", "ancestral", "--block-length", "4")


def test_help_lists_the_samplers():
    parser = argparse.ArgumentParser()
    add_sampler_arguments(parser)
    assert "{euler,tau_leaping,tweedie,ancestral,first_hitting,confidence}" in parser.format_help()


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 0.0}, r"threshold must lie in \(0, 1\)"),
    ({"block_length": 0}, "block_length must be >= 1"),
    ({"remasking": "worst"}, "remasking must be one of low_confidence, max_prob, margin, entropy, random"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"greedy": 1}, "greedy must be true or false"),
])
def test_the_library_checks_come_from_the_table(kwargs, match):
    g = dd.Absorbing(3)
    with pytest.raises(ValueError, match=match):
        dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(TOY.denoiser_model(g), 2, 3, "confidence", **kwargs)


def test_an_option_of_one_sampler_is_refused_by_the_others():
    g = dd.Absorbing(3)
    with pytest.raises(ValueError, match="threshold applies to the confidence sampler only"):
        dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(TOY.denoiser_model(g), 2, 3, "ancestral", threshold=0.5)


def test_web_requests_are_checked_by_the_same_rows():
    assert check_request_option("threshold", 0.5, "confidence") == 0.5
    assert check_request_option("steps", 7, "euler", high=8) == 7
    for name, value, sampler, match in [("steps", 9, "euler", r"steps must lie in \[1, 8\]"),
                                        ("top_k", 1.5, "euler", "top_k must be an integer or null"),
                                        ("threshold", 0.5, "euler", "applies to the confidence sampler only"),
                                        ("cache", True, "ancestral", "unknown field")]:
        with pytest.raises(ValueError, match=match):
            check_request_option(name, value, sampler, high=8)
    assert check_request_option("top_p", None, "euler") is None
