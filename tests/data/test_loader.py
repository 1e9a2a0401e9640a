import itertools

import numpy as np
import pytest
import torch

from discdiff.data import RecordDataset, TokenLoader, TokenWriter, TruncationWarning, WindowDataset


@pytest.fixture
def stream(tmp_path):
    with TokenWriter(tmp_path / "stream", vocab_size=1000, layout="stream", tokenizer_dir=tmp_path) as w:
        w.add(np.arange(1000))  # token == position, so a window's first token is where it starts
    return tmp_path / "stream.json"


@pytest.fixture
def records(tmp_path):
    rng = np.random.default_rng(0)
    with TokenWriter(tmp_path / "rec", vocab_size=10, layout="records", tokenizer_dir=tmp_path) as w:
        for i in range(40):
            w.add(rng.integers(3, 10, size=1 + i % 13), label=i)
    return tmp_path / "rec.json"


def take(loader, n):
    return [b.tokens.clone() for b in itertools.islice(iter(loader), n)]


def test_windows_are_contiguous_and_deterministic(stream):
    ds = WindowDataset(stream, context=16)
    assert len(ds) == (1000 - 16 + 1) // 16
    batches = take(TokenLoader(ds, batch_size=4, seed=3), 5)
    for b in batches:
        assert (b[:, 1:] - b[:, :-1]).eq(1).all()
    assert all(torch.equal(a, b) for a, b in zip(batches, take(TokenLoader(ds, batch_size=4, seed=3), 5), strict=True))
    assert not torch.equal(batches[0], take(TokenLoader(ds, batch_size=4, seed=4), 1)[0])
    gen = torch.Generator().manual_seed(7)
    same = take(TokenLoader(ds, 4, seed=torch.Generator().manual_seed(7)), 2)
    assert all(torch.equal(a, b) for a, b in zip(take(TokenLoader(ds, 4, seed=gen), 2), same, strict=True))


@pytest.mark.filterwarnings("ignore::discdiff.data.TruncationWarning")
@pytest.mark.parametrize("kind", ["stream", "records"])
def test_resume_yields_exactly_the_uninterrupted_batches(kind, stream, records):
    ds = WindowDataset(stream, 16) if kind == "stream" else RecordDataset(records, 8, eos_id=2, pad_id=0,
                                                                          long_records="crop")
    full = TokenLoader(ds, batch_size=5, seed=11)
    expected = take(full, 3 * len(full))  # crosses two epoch boundaries
    first = TokenLoader(ds, batch_size=5, seed=11)
    it = iter(first)
    got = [next(it).tokens for _ in range(len(first) + 2)]
    state = first.state_dict()
    resumed = TokenLoader(ds, batch_size=5, seed=11)
    resumed.load_state_dict(dict(state))
    got += take(resumed, len(expected) - len(got))
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_shards_are_disjoint_and_cover_the_epoch(stream):
    ds = WindowDataset(stream, context=10)
    starts = []
    for rank in range(3):
        loader = TokenLoader(ds, batch_size=4, seed=5, rank=rank, world_size=3, epochs=1)
        starts.append(torch.cat([b.tokens[:, 0] for b in loader]))
        assert starts[-1].numel() == len(loader) * 4 == len(ds) // 3 // 4 * 4
    starts = torch.cat(starts)
    assert starts.unique().numel() == starts.numel()  # no window twice across ranks
    assert (starts % 10).unique().numel() == 1  # one random offset per epoch, shared by all ranks


def test_evaluation_order_keeps_everything(records):
    ds = RecordDataset(records, 16, eos_id=2, pad_id=0)
    labels = torch.cat([b.labels for b in TokenLoader(ds, batch_size=7, shuffle=False, epochs=1)])
    assert labels.tolist() == list(range(40))
    two = [torch.cat([b.labels for b in TokenLoader(ds, 7, shuffle=False, rank=r, world_size=2, epochs=1)])
           for r in range(2)]
    assert sorted(two[0].tolist() + two[1].tolist()) == list(range(40))


def test_records_get_eos_pad_and_mask(records):
    from discdiff.data import TokenFile

    data = TokenFile.open(records)
    ds = RecordDataset(data, 16, eos_id=2, pad_id=0)
    batch = ds.get(np.arange(3), epoch_seed=0, randomize=False)
    for row in range(3):
        n = data.lengths[row]
        assert batch.tokens[row, :n].tolist() == data.record(row).tolist()
        assert batch.tokens[row, n] == 2 and batch.tokens[row, n + 1:].eq(0).all()
        assert batch.mask[row].tolist() == [True] * (n + 1) + [False] * (15 - n)
    assert batch.mask.dtype == torch.bool and batch.labels.tolist() == [0, 1, 2]


def test_long_records_are_cropped_with_a_count_or_refused(records):
    with pytest.warns(TruncationWarning, match=r"18 of 40 records .* longer than context 8"):
        ds = RecordDataset(records, 8, eos_id=2, pad_id=0)
    data, full = ds.data, []
    for i in range(40):
        full.append(data.record(i).tolist() + [2])
    crops = [ds.get(np.arange(40), epoch_seed=seed).tokens.tolist() for seed in (1, 2)]
    for crop in crops:  # every long record's window is a contiguous piece of record + EOS
        for i in np.flatnonzero(ds.lengths > 8):
            assert any(full[i][s:s + 8] == crop[i] for s in range(len(full[i]) - 7))
    assert crops[0] != crops[1]  # a fresh window per epoch
    first = ds.get(np.arange(40), epoch_seed=1, randomize=False).tokens.tolist()
    assert all(first[i] == full[i][:8] for i in range(40) if len(full[i]) > 8)
    with pytest.raises(ValueError, match="18 records are longer than context 8"):
        RecordDataset(records, 8, eos_id=2, pad_id=0, long_records="error")


def test_resume_refuses_a_different_configuration(stream):
    ds = WindowDataset(stream, 16)
    state = TokenLoader(ds, 4, seed=1).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        TokenLoader(ds, 4, seed=1, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="no batch"):
        TokenLoader(ds, 1000, seed=1)


def test_records_can_start_with_bos(records):
    ds = RecordDataset(records, 16, eos_id=2, pad_id=0, bos_id=1, add_bos=True)
    batch = ds.get(np.arange(2), epoch_seed=0, randomize=False)
    record = ds.data.record(1).tolist()
    assert batch.tokens[1, : len(record) + 2].tolist() == [1, *record, 2]
    assert batch.mask[1].sum() == len(record) + 2
    with pytest.raises(ValueError, match="bos_id"):
        RecordDataset(records, 16, eos_id=2, pad_id=0, add_bos=True)


def test_eos_padding_trains_every_position_and_starts_with_bos(records):
    # LLaDA's recipe: [BOS] body EOS EOS ... EOS, every position real (the padding EOS is trained like any token)
    from discdiff.data.packing import TokenFile

    ds = RecordDataset(records, 16, eos_id=2, pad_id=0, bos_id=1, add_bos=True, padding="eos")
    batch = ds.get(np.arange(len(ds)), 0, randomize=False)
    assert batch.mask.all()
    lengths = TokenFile.open(records).lengths
    for row, n in zip(batch.tokens.tolist(), lengths.tolist(), strict=True):
        assert row == [1] + row[1:1 + n] + [2] * (15 - n) and 2 not in row[1:1 + n] and 0 not in row
    layout = ds.record_layout()
    assert layout["padding"] == "eos" and sum(layout["length_counts"]) == len(ds)
    assert layout["length_counts"][5] == int((lengths == 5).sum())


def test_pad_padding_masks_the_tail(records):
    ds = RecordDataset(records, 16, eos_id=2, pad_id=0, padding="pad")
    batch = ds.get(np.arange(3), 0, randomize=False)
    assert batch.mask.sum(1).tolist() == [2, 3, 4] and (batch.tokens[~batch.mask] == 0).all()


def test_long_records_can_be_dropped(records):
    from discdiff.data.packing import TokenFile

    lengths = TokenFile.open(records).lengths
    ds = RecordDataset(records, 8, eos_id=2, pad_id=0, bos_id=1, add_bos=True, padding="eos", long_records="drop")
    assert len(ds) == int((lengths + 2 <= 8).sum())
    batch = ds.get(np.arange(len(ds)), 0, randomize=False)
    assert (batch.tokens == 2).any(1).all()  # every kept record ends with its EOS
    with pytest.raises(ValueError, match="padding must be one of eos, pad"):
        RecordDataset(records, 8, eos_id=2, pad_id=0, padding="zeros")
    with pytest.raises(ValueError, match="needs an eos_id"):
        RecordDataset(records, 8, pad_id=0, padding="eos")
