"""Class labels in the DiffusionTransformer: one vector per sequence, null label = num_classes."""

import pytest
import torch

from discdiff.nn import DiffusionTransformer, TransformerConfig


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_labels_steer_the_output_and_none_is_the_null_label(time_conditioning):
    torch.manual_seed(0)
    cfg = TransformerConfig(num_states=5, d_model=32, n_layers=2, n_heads=2, max_len=8, num_classes=3,
                            time_conditioning=time_conditioning, cond_dim=16)
    model = DiffusionTransformer(cfg)
    for p in model.parameters():  # adaLN-zero starts at the identity: give every weight a value
        torch.nn.init.normal_(p, std=0.2)
    x, sigma = torch.randint(0, 5, (2, 8)), torch.rand(2)
    by_label = [model(x, sigma, label=torch.full((2,), c)) for c in range(4)]
    assert all(not torch.allclose(by_label[0], other) for other in by_label[1:])
    torch.testing.assert_close(model(x, sigma), by_label[3])  # no label: the null label
    mixed = model(x, sigma, label=torch.tensor([0, 2]))
    torch.testing.assert_close(mixed[1], by_label[2][1])  # a row's label is its own


def test_bad_labels_are_refused():
    model = DiffusionTransformer(TransformerConfig(num_states=5, d_model=32, n_layers=1, n_heads=2, max_len=8,
                                                   num_classes=3))
    x = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\] \(or 3, the null label\), got \[0, 4\]"):
        model(x, None, label=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"label must be an integer tensor of shape \(2,\)"):
        model(x, None, label=torch.tensor([0.0, 1.0]))
    plain = DiffusionTransformer(TransformerConfig(num_states=5, d_model=32, n_layers=1, n_heads=2, max_len=8))
    with pytest.raises(ValueError, match="takes no class label"):
        plain(x, None, label=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        TransformerConfig(num_states=5, d_model=32, n_layers=1, n_heads=2, num_classes=0)
