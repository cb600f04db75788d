"""Model inspection: parameter counts, fully connected layer finder, receptive field table."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from instructor.reference.session2 import SeedNet, Session2Net
from course_utils.inspection import (count_parameters, describe, find_fc_layers, largest_layers,
                                     parameter_table, receptive_field)


def test_reference_networks_have_their_documented_parameter_counts():
    model = SeedNet()
    assert count_parameters(model) == 9920
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert bn == 168  # 9,752 conv weights + 168 BN (gamma, beta); running stats are buffers
    ref = Session2Net()
    assert count_parameters(ref) == 9904
    assert sum(p.numel() for m in ref.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()) == 168


def test_frozen_parameters_count_and_buffers_do_not():
    bn = nn.BatchNorm2d(4)
    bn.weight.requires_grad_(False)
    assert count_parameters(bn) == 8
    assert count_parameters(bn, trainable_only=True) == 4


def test_parameter_table_agrees_with_the_count():
    stats = parameter_table(SeedNet())
    assert stats.total_params == 9920
    assert "Conv2d" in str(stats)
    assert largest_layers(SeedNet(), 1) == [("features.1.0", 2304)]


class Hidden(nn.Linear):
    pass


@pytest.mark.parametrize("layer,kind", [(nn.Linear(10, 10), "Linear"), (nn.LazyLinear(10), "LazyLinear"),
                                        (nn.Bilinear(5, 5, 10), "Bilinear"), (Hidden(3, 3), "Hidden")])
def test_fully_connected_layers_are_found(layer, kind):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.Flatten(), layer))
    assert find_fc_layers(model) == [("1.1", kind)]


def test_conv_only_network_has_no_fc_layers():
    assert find_fc_layers(SeedNet()) == []


def test_receptive_field_of_the_reference_network():
    rows = receptive_field(SeedNet())
    assert [r.out_size for r in rows] == [26, 24, 24, 12, 10, 8, 6, 6, 1, 1]
    assert [r.rf for r in rows] == [3, 5, 5, 6, 10, 14, 18, 22, 32, 32]
    assert [r.jump for r in rows] == [1, 1, 1, 2, 2, 2, 2, 2, 12, 12]
    assert [r.channels for r in rows][-1] == 10


def _measured_rf(model: nn.Module, size: int = 64) -> int:
    """Trusted reference: the input pixels that the centre output pixel depends on (gradient support)."""
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    out = model(x)
    c = out.shape[-1] // 2
    out[0, :, c, c].sum().backward()
    nz = (x.grad[0, 0].abs() > 0).nonzero()
    return int(nz[:, 0].max() - nz[:, 0].min() + 1)


@pytest.mark.parametrize("layers", [
    [nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3)],
    [nn.Conv2d(1, 2, 5, stride=2), nn.Conv2d(2, 2, 3, dilation=2), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, padding=1)],
    [nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3)],
])
def test_receptive_field_matches_gradient_support(layers):
    torch.manual_seed(0)
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 0.1, 1.0)  # positive weights: no accidental cancellation
    # MaxPool routes the gradient through one pixel; use AvgPool for the measurement, same geometry.
    probe = nn.Sequential(*[nn.AvgPool2d(m.kernel_size, m.stride) if isinstance(m, nn.MaxPool2d) else m
                            for m in model])
    assert receptive_field(model, 64)[-1].rf == _measured_rf(probe)


def test_describe_mentions_count_fc_and_rf():
    text = describe(SeedNet())
    assert "9,920 parameters" in text and "Fully connected layers: none" in text and "RF" in text
