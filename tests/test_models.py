import pytest
import torch

from prunekit.models import MODEL_NAMES, INPUT_SHAPES, build_model

EXPECTED_PARAMETERS = {"lenet300": 266_610, "lenet5": 431_080, "vgg": 1_175_786, "resnet20": 272_474}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_and_parameter_counts(name):
    model = build_model(name).eval()
    out = model(torch.zeros(2, *INPUT_SHAPES[name]))
    assert out.shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMETERS[name]


def test_architectures_follow_the_papers():
    lenet5 = build_model("lenet5")
    assert [lenet5.conv1.out_channels, lenet5.conv2.out_channels, lenet5.fc1.out_features] == [20, 50, 500]
    vgg = build_model("vgg")
    convs = [m for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= 6 and any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in vgg.modules())
    resnet = build_model("resnet20")
    convs = [m for m in resnet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # 6n + 1 conv layers (+ fc = 20 weighted layers), n = 3
    assert [resnet.stage1[0].conv1.out_channels, resnet.stage2[0].conv1.out_channels,
            resnet.stage3[0].conv1.out_channels] == [16, 32, 64]


def test_unknown_model():
    with pytest.raises(ValueError, match="lenet300"):
        build_model("alexnet")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_slicing_gives_the_leading_layers(name):
    model = build_model(name).eval()
    head, tail = model[:3], model[3:]
    x = torch.randn(2, *INPUT_SHAPES[name])
    assert torch.allclose(tail(head(x)), model(x))
    assert isinstance(model[0], torch.nn.Module)
