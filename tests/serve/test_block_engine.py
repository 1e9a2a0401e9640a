"""A block diffusion checkpoint (model.block_size) in the demo: it loads, its streamed states fill the blocks left
to right (later blocks still masked, finished blocks never change), and the demo's limits and errors hold."""

import pytest
import torch
from serve_helpers import TEXT, make_checkpoint
from test_engine import replay, run

from discdiff.blocks import BlockDiffusion
from discdiff.data import CharTokenizer
from discdiff.serve import Engine, Limits, RequestError
from discdiff.training import DiffusionConfig, ModelConfig

B = 4  # the model's block size
CONTEXT = 32


@pytest.fixture(scope="module")
def block_engine(tmp_path_factory) -> Engine:
    model_cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, cond_dim=16, time_conditioning=False, block_size=B)
    path = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "blocks", CharTokenizer.from_texts([TEXT]), CONTEXT,
                           DiffusionConfig(objective="k_dce"), model_cfg)
    return Engine.load(path, Limits(max_steps=64, max_samples=2))


def block_spans(length: int) -> list[slice]:
    return [slice(s, min(s + B, length)) for s in range(0, length, B)]


def check_blocks_fill_left_to_right(frames: list[torch.Tensor], mask_id: int) -> list[int]:
    """Every frame: blocks before the one in progress are finished, blocks after it are as they started; a finished
    block never changes again. Returns the frame at which each block (of row 0) was first finished."""
    start, spans = frames[0], block_spans(frames[0].shape[1])
    finished_at = [None] * len(spans)
    for f, frame in enumerate(frames):
        for row in range(frame.shape[0]):
            done = [bool((frame[row, s] != mask_id).all()) for s in spans]
            changed = [not torch.equal(frame[row, s], start[row, s]) for s in spans]
            current = next((k for k, d in enumerate(done) if not d), len(spans))  # the block in progress
            assert all(done[:current]), f"frame {f}, row {row}: a block before block {current} is unfinished"
            assert not any(changed[current + 1:]), f"frame {f}, row {row}: a block after {current} changed early"
        for k, s in enumerate(spans):
            if finished_at[k] is None and bool((frame[:, s] != mask_id).all()):
                finished_at[k] = f
            if finished_at[k] is not None:  # finished blocks never change
                assert torch.equal(frame[:, s], frames[finished_at[k]][:, s]), f"block {k} changed after it finished"
    assert None not in finished_at
    return finished_at


def test_a_block_checkpoint_loads_with_its_block_size_and_masked_samplers(block_engine):
    assert isinstance(block_engine.diffusion, BlockDiffusion) and block_engine.block_size == B
    info = block_engine.info()
    assert info["block_size"] == B and info["limits"]["max_length"] == CONTEXT  # capped at the model's max_len
    assert set(info["samplers"]) == {"ancestral", "first_hitting", "confidence"}


@pytest.mark.parametrize("sampler,extra", [("ancestral", {}), ("first_hitting", {}), ("confidence", {}),
                                           ("confidence", {"block_length": B, "threshold": 0.5})])
def test_streamed_states_fill_blocks_left_to_right(block_engine, sampler, extra):
    length = 18  # 4 blocks of 4 and a last block of 2
    events = run(block_engine, {"template": "", "length": length, "sampler": sampler, "steps": 6, "num_samples": 2,
                                "seed": 5, **extra})
    assert [k for k, _ in events][0] == "start" and events[-1][0] == "done"
    start = events[0][1]
    assert start["block_size"] == B and start["total_steps"] == 6 * 5
    frames = replay(events)
    mask_id = block_engine.graph.mask_id
    assert (frames[0] == mask_id).all() and not (frames[-1] == mask_id).any()
    finished_at = check_blocks_fill_left_to_right(frames, mask_id)
    assert finished_at == sorted(finished_at) and len(set(finished_at)) == len(finished_at)  # one after another
    # the state the page shows when block 1 has just finished: blocks 0 and 1 done, every later one masked
    middle = frames[finished_at[1]]
    assert (middle[:, 2 * B:] == mask_id).all() and not (middle[:, : 2 * B] == mask_id).any()
    assert [block_engine.tokenizer.decode(r) for r in frames[-1].tolist()] == events[-1][1]["text"]


def test_a_prompt_fills_its_blocks_at_once_and_stays(block_engine):
    events = run(block_engine, {"template": "To be, o{9}", "sampler": "ancestral", "steps": 4, "seed": 2})
    frames = replay(events)
    mask_id = block_engine.graph.mask_id
    finished_at = check_blocks_fill_left_to_right(frames, mask_id)
    assert finished_at[:2] == [0, 0]  # "To b", "e, o": the prompt's whole blocks are finished from the start
    assert all(block_engine.tokenizer.decode(r).startswith("To be, o") for r in frames[-1].tolist())


@pytest.mark.parametrize("payload,message", [
    ({"sampler": "confidence", "block_length": 3}, f"block_length=3 contradicts this block model's block_size={B}"),
    ({"sampler": "euler"}, "a block model fills each block with a masked sampler"),
    ({"length": CONTEXT + 1}, f"length must lie in \\[1, {CONTEXT}\\]"),
])
def test_bad_requests_to_a_block_model_are_one_line_400s(block_engine, payload, message):
    with pytest.raises(RequestError, match=message) as err:
        block_engine.parse({"template": "", "length": 8, **payload})
    assert err.value.status == 400 and "\n" not in str(err.value)


@pytest.mark.parametrize("sampler", ["ancestral", "first_hitting", "confidence"])
def test_a_block_row_is_the_same_alone_and_beside_another_prompt(block_engine, sampler):
    """Per-row seeds in the block demo: row 0 with its prompt alone == row 0 of a batch with another prompt."""
    payload = {"sampler": sampler, "length": 12, "steps": 4, "seed": 5}
    both = run(block_engine, {**payload, "prompts": ["to be", "or"]})[-1][1]
    alone = run(block_engine, {**payload, "prompts": ["to be"]})[-1][1]
    assert alone["text"][0] == both["text"][0] and both["text"][1].startswith("or")
