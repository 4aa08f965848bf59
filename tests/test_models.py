import keras
import numpy as np
import pytest

from helpers.models import MODELS, CosineSoftmax, build_model
from helpers.pretrained import lite0_weights_path, read_torch_state_dict

EXPECTED = {  # name: (input shape, parameters); the study's counts for benchmark and lenet5
    "benchmark": ((32, 32, 1), 338_610),
    "lenet5": ((32, 32, 1), 81_194),
    "resnet_small": ((28, 28, 1), 413_786),  # ResNet-9 at width 16
    "resnet50": ((32, 32, 1), 23_608_202),  # 23,587,712 backbone + 20,490 head
}


def test_every_registered_model_is_checked():
    assert set(MODELS) == set(EXPECTED) | {"catalogue_cnn", "catalogue_lite0"}


@pytest.mark.parametrize("name", ["catalogue_cnn", "catalogue_lite0"])
def test_catalogue_models_have_one_head_per_attribute_and_an_embedding(name):
    heads = {"gender": 5, "articleType": 70}
    model = build_model(name, (80, 60, 3), heads)
    out = model.predict(np.zeros((2, 80, 60, 3), dtype="float32"), verbose=0)
    assert {k: v.shape for k, v in out.items()} == {"gender": (2, 5), "articleType": (2, 70)}
    assert model.get_layer("embedding").output.shape == (None, 256)
    assert isinstance(model.get_layer("gender"), CosineSoftmax)
    with pytest.raises(ValueError, match="head name"):
        build_model(name, (80, 60, 3), 10)


def test_catalogue_lite0_starts_from_imagenet_and_freezes_stages_1_to_3():
    model = build_model("catalogue_lite0", (80, 60, 3), {"gender": 5})
    state = read_torch_state_dict(lite0_weights_path())
    np.testing.assert_array_equal(model.get_layer("block10_project").get_weights()[0][0, 0],
                                  state["_blocks.10._project_conv.weight"][:, :, 0, 0].T)
    frozen = {layer.name for layer in model.layers if layer.weights and not layer.trainable}
    assert "stem_conv" in frozen and "block4_project_bn" in frozen and "block5_expand" not in frozen
    assert len(frozen) == 30  # stem conv + BN, block 0 (4 layers), blocks 1-4 (6 layers each)
    scratch = build_model("catalogue_lite0", (80, 60, 3), {"gender": 5}, pretrained=False, frozen_blocks=0)
    assert all(layer.trainable for layer in scratch.layers)
    assert not np.array_equal(scratch.get_layer("block10_project").get_weights()[0],
                              model.get_layer("block10_project").get_weights()[0])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_output_shape_and_parameter_count(name):
    shape, params = EXPECTED[name]
    model = build_model(name, shape, 10)
    assert model.count_params() == params
    out = model.predict(np.zeros((2, *shape), dtype="float32"), verbose=0)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_dropout_adds_no_parameters():
    assert build_model("benchmark", (32, 32, 1), 10, dropout=0.2).count_params() == 338_610


def test_resnet50_accepts_colour_input():
    assert build_model("resnet50", (32, 32, 3), 7).output_shape == (None, 7)


def test_unknown_name_lists_the_valid_ones():
    valid = "benchmark, catalogue_cnn, catalogue_lite0, lenet5, resnet50, resnet_small"
    with pytest.raises(ValueError, match=f"valid names: {valid}"):
        build_model("resnet18", (32, 32, 1), 10)


def test_resnet50_batch_norm_momentum_is_set_on_every_backbone_layer():
    # 0.9, not Keras' 0.99: with a few hundred CPU steps 0.99 collapses the test-time predictions (chapter 04)
    backbone = build_model("resnet50", (32, 32, 1), 10).get_layer("resnet50")
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 53 and {layer.momentum for layer in norms} == {0.9}


def test_cosine_heads_depend_on_direction_only_and_survive_saving(tmp_path):
    model = build_model("catalogue_cnn", (80, 60, 3), {"gender": 5, "articleType": 70})
    assert isinstance(model.get_layer("gender"), CosineSoftmax) and model.get_layer("gender").scale == 16.0
    head = model.get_layer("articleType")
    x = np.random.default_rng(0).normal(size=(3, 256)).astype("float32")
    p = np.asarray(head(x))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(head(5 * x)), p, rtol=1e-5)  # the length of the embedding does not matter
    # no cosine is above 1, so no probability ratio exceeds e^(16 * 2)
    assert np.all(np.log(p.max(axis=1) / p.min(axis=1)) <= 32 + 1e-3)
    model.save(tmp_path / "m.keras")
    images = np.random.default_rng(1).integers(0, 255, (2, 80, 60, 3)).astype("float32")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(images, verbose=0)["articleType"],
                               model.predict(images, verbose=0)["articleType"], rtol=1e-5)


def test_catalogue_cnn_trunk_options():
    heads = {"gender": 5}
    plain = build_model("catalogue_cnn", (80, 60, 3), heads, stem=None, widths=(32, 32), batch_norm=False,
                        cosine_scale=None)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    # four 3x3 convolutions with biases (3->32, 32->32, 32->32, 32->32), embedding 32->256, head 256->5
    assert plain.count_params() == (3 * 9 * 32 + 32) + 3 * (32 * 9 * 32 + 32) + (32 * 256 + 256) + (256 * 5 + 5)
    cosine = build_model("catalogue_cnn", (80, 60, 3), heads, stem=None, widths=(32, 32), batch_norm=False)
    assert cosine.count_params() == plain.count_params() - 5  # a cosine head has directions, no biases


def test_catalogue_cnn_has_dropout_only_when_asked():
    heads = {"gender": 5}
    default = build_model("catalogue_cnn", (80, 60, 3), heads)
    with_dropout = build_model("catalogue_cnn", (80, 60, 3), heads, dropout=0.3)
    dropouts = [[layer.rate for layer in m.layers if isinstance(layer, keras.layers.Dropout)]
                for m in (default, with_dropout)]
    assert dropouts == [[], [0.3]]
    assert default.count_params() == with_dropout.count_params()
