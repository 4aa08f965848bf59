"""Model builders in a registry: ``build_model(name, input_shape, num_classes)``.

Every model takes raw pixel values (0-255) and rescales them itself, so that saved
models and predictions need no separate preprocessing step. Output layers compute in float32 under
any precision policy (``helpers.precision``), as Keras' mixed-precision guide recommends: bfloat16
keeps about three significant digits, too few for probabilities near 1 and for their logarithms.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from helpers.pretrained import freeze_lite0, lite0_backbone, load_lite0_weights

MODELS: dict[str, Callable[..., keras.Model]] = {}


def register(name: str):
    def decorator(builder):
        MODELS[name] = builder
        return builder
    return decorator


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> keras.Model:
    """Build the registered model ``name``; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}.")
    return MODELS[name](tuple(input_shape), num_classes, **kwargs)


def _inputs(input_shape, rescale: bool = True):
    inputs = keras.Input(shape=input_shape)
    return inputs, layers.Rescaling(1.0 / 255)(inputs) if rescale else inputs


def _dense_head(x, hidden: tuple[int, ...], num_classes: int, dropout: float):
    """ReLU dense layers (each followed by dropout when asked), then the softmax layer."""
    for units in hidden:
        x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32")(x)


@register("benchmark")
def build_benchmark(input_shape, num_classes, dropout: float = 0.0, rescale: bool = True):
    """The study's dense network (Hands-On ML): Flatten -> 300 -> 100 -> softmax.

    ``rescale=False`` feeds raw 0-255 pixels, as the study's catalogue attempt did (chapter 06).
    """
    inputs, x = _inputs(input_shape, rescale)
    outputs = _dense_head(layers.Flatten()(x), (300, 100), num_classes, dropout)
    return keras.Model(inputs, outputs, name="benchmark")


@register("lenet5")
def build_lenet5(input_shape, num_classes, dropout: float = 0.0):
    """The study's LeNet-5: two 3x3 convolutions with average pooling, then 120 -> 84."""
    inputs, x = _inputs(input_shape)
    x = layers.Conv2D(6, 3, activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    outputs = _dense_head(layers.Flatten()(x), (120, 84), num_classes, dropout)
    return keras.Model(inputs, outputs, name="lenet5")


def residual_block(x, filters: int):
    """Two 3x3 convolution -> batch normalisation -> ReLU layers whose output is added to their input."""
    y = _conv_relu(_conv_relu(x, filters), filters)
    return layers.Add()([x, y])


@register("resnet_small")
def build_resnet_small(input_shape, num_classes, widths=(16, 32, 64, 128), residual=(True, False, True)):
    """A ResNet-9 (Page, 2018) sized for 28x28 images, about 414 thousand parameters at the default widths.

    A 3x3 stem of ``widths[0]`` filters at full resolution, then one stage per further width: a 3x3
    convolution, a 2x2 max-pool (28 -> 14 -> 7 -> 3) and, where ``residual`` says so, a residual block.
    Global max pooling and a softmax layer finish it.
    """
    inputs, x = _inputs(input_shape)
    x = _conv_relu(x, widths[0])
    for filters, has_block in zip(widths[1:], residual, strict=True):
        x = layers.MaxPooling2D(2)(_conv_relu(x, filters))
        if has_block:
            x = residual_block(x, filters)
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet_small")


@register("resnet50")
def build_resnet50(input_shape, num_classes, dropout: float = 0.5, bn_momentum: float = 0.9):
    """The study's ResNet-50 (Keras applications, trained from scratch) -> Dropout -> Dense.

    ``bn_momentum``: the momentum of the backbone's batch-normalisation moving averages. Keras'
    default, 0.99, needs thousands of training steps before the test-time statistics are right; a
    CPU budget gives hundreds, and with 0.99 the network collapses to one class at test time
    (chapter 04 shows it). Pass 0.99 to reproduce that.
    """
    inputs, x = _inputs(input_shape)
    if input_shape[-1] == 1:  # ResNet50 expects three channels
        x = layers.Concatenate()([x, x, x])
    backbone = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(*input_shape[:2], 3), pooling="avg")
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    x = backbone(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet50")


@keras.saving.register_keras_serializable(package="helpers")
class CosineSoftmax(layers.Layer):
    """Softmax over ``scale`` x the cosine between the input and one learned direction per class.

    The "normalised softmax" of Zhai & Wu (2019, "Classification is a strong baseline for deep
    metric learning"): the class decision depends only on the input's direction, so the layer before
    it is trained for exactly the geometry a cosine nearest-neighbour search uses.
    """

    def __init__(self, units: int, scale: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = int(units), float(scale)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                      name="kernel")

    def call(self, x):
        cosine = keras.ops.matmul(keras.ops.normalize(x, axis=-1), keras.ops.normalize(self.kernel, axis=0))
        return keras.ops.softmax(self.scale * cosine)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


@register("catalogue_cnn")
def build_catalogue_cnn(input_shape, num_classes: dict[str, int], stem: int | None = 32, widths=(32, 96, 256),
                        embedding: int = 256, dropout: float = 0.0, batch_norm: bool = True,
                        cosine_scale: float | None = 16.0, bn_momentum: float = 0.9):
    """A multi-output CNN for catalogue photos: one shared trunk, one softmax head per attribute.

    ``num_classes`` maps each head (``"gender"``, ``"articleType"``, ...) to its class count.
    The trunk is an optional stride-2 3x3 stem of ``stem`` filters (None: none), then one stage per
    width of two 3x3 convolutions (with batch normalisation when ``batch_norm``) and a 2x2 max-pool,
    global average pooling and an ``embedding`` layer that chapter 08 reuses for similar-product
    search. The defaults put the width where convolutions are cheap (the last, 10x7 stage) and use no
    dropout: the network under-fits a CPU budget, and on chapter 07's two-epoch budget this pair beat
    (48, 96, 192) with dropout 0.3 by 0.06 on baseColour at the same cost per epoch (see results/EXPERIMENTS.md).

    With ``cosine_scale`` (the default) the embedding is linear and every head is a ``CosineSoftmax``
    of that scale, so classes are told apart by direction alone, the geometry of a cosine search;
    ``cosine_scale=None`` gives a ReLU embedding and ordinary softmax heads. Batch normalisation uses
    momentum 0.9, not Keras' 0.99: trained from scratch for a few hundred steps, the moving averages
    must follow the last few dozen (the trap chapter 04 shows with ResNet-50).
    """
    inputs, x = _inputs(input_shape)
    if stem:
        x = _conv_relu(x, stem, batch_norm, stride=2, bn_momentum=bn_momentum)
    for filters in widths:
        x = _conv_relu(_conv_relu(x, filters, batch_norm, bn_momentum=bn_momentum), filters, batch_norm,
                       bn_momentum=bn_momentum)
        x = layers.MaxPooling2D(2)(x)
    return _tagging_model(inputs, x, num_classes, embedding, dropout, cosine_scale, "catalogue_cnn")


@register("catalogue_lite0")
def build_catalogue_lite0(input_shape, num_classes: dict[str, int], upsample: int = 2, frozen_blocks: int = 5,
                          pretrained: bool = True, embedding: int = 256, dropout: float = 0.0,
                          cosine_scale: float | None = 16.0):
    """``catalogue_cnn``'s heads and embedding on an ImageNet-pretrained EfficientNet-Lite0 trunk
    (``helpers.pretrained``), fine-tuned.

    The photos are enlarged ``upsample`` times (80x60 -> 160x120 by default: ImageNet's filters were
    learned on objects that fill a 224x224 frame). The stem and the first ``frozen_blocks`` blocks
    (5: stages 1-3, edges and textures) keep their ImageNet weights and batch-norm statistics and
    are not trained, which makes an epoch at 160x120 cost about what a full fine-tune at 80x60 does.
    ``pretrained=False`` leaves the trunk randomly initialised (tests).
    """
    trunk = lite0_backbone(input_shape, upsample)
    if pretrained:
        load_lite0_weights(trunk)
    freeze_lite0(trunk, frozen_blocks)
    return _tagging_model(trunk.inputs[0], trunk.outputs[0], num_classes, embedding, dropout, cosine_scale,
                          "catalogue_lite0")


def _tagging_model(inputs, features, num_classes: dict[str, int], embedding: int, dropout: float,
                   cosine_scale: float | None, name: str) -> keras.Model:
    """Global average pooling, the ``embedding`` layer and one head per attribute (see ``catalogue_cnn``)."""
    if not isinstance(num_classes, dict) or not num_classes:
        raise ValueError(f"{name} needs num_classes as {{head name: number of classes}}.")
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dense(embedding, activation=None if cosine_scale else "relu", name="embedding")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)

    def head(n: int, head_name: str):
        if cosine_scale:
            return CosineSoftmax(n, cosine_scale, name=head_name)
        return layers.Dense(n, activation="softmax", name=head_name)

    outputs = {head_name: head(n, head_name)(x) for head_name, n in num_classes.items()}
    return keras.Model(inputs, outputs, name=name)


def _conv_relu(x, filters: int, batch_norm: bool = True, stride: int = 1, bn_momentum: float = 0.99):
    """3x3 convolution -> (batch normalisation with ``bn_momentum``, Keras' default 0.99) -> ReLU."""
    if not batch_norm:
        return layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization(momentum=bn_momentum)(x))
