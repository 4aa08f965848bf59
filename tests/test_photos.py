"""One decoder for every photo: what a person sees, and a named refusal for what no photo is."""

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import photos
from helpers.catalogue import decode_image
from helpers.fashion_mnist import DataError

TOP_GREEN_BOTTOM_RED = np.zeros((80, 60, 3), np.uint8)
TOP_GREEN_BOTTOM_RED[:, :, 0] = 200
TOP_GREEN_BOTTOM_RED[:40] = (20, 200, 20)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def grey_png(width: int, height: int, whole: bool = True) -> bytes:
    """A black greyscale PNG; ``whole=False`` stores one row only, as a decompression bomb does."""
    compressor = zlib.compressobj(9)
    rows = [compressor.compress(b"\0" * (width + 1)) for _ in range(height if whole else 1)]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(rows)
            + compressor.flush()) + png_chunk(b"IEND", b""))


def png_with_damaged_chunk() -> bytes:
    """A PNG whose image data is split by four bytes that are no chunk: a real kind of corruption."""
    pixels = np.random.default_rng(0).integers(0, 256, (80, 60, 3), dtype=np.uint8)
    data = zlib.compress(b"".join(b"\0" + row.tobytes() for row in pixels))
    half = len(data) // 2
    header = struct.pack(">IIBBBBB", 60, 80, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data[:half])
            + struct.pack(">I", len(data) - half) + b"\0\x01\x02\x03" + data[half:] + b"\0" * 4
            + png_chunk(b"IEND", b""))


def phone_jpeg(orientation: int = 6) -> bytes:
    """``TOP_GREEN_BOTTOM_RED`` stored sideways, with the EXIF orientation that turns it upright."""
    turns = {6: 1, 8: -1, 3: 2}[orientation]  # stored = the upright photo turned back
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(TOP_GREEN_BOTTOM_RED, turns)))
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95)


def dds_of_unknown_pixel_format() -> bytes:
    dds = bytearray(encode(Image.new("RGB", (8, 8)), "DDS"))
    dds[80:88] = (4).to_bytes(4, "little") + b"XXXX"  # pixel format flags: a FourCC code, and an unknown one
    return bytes(dds)


def test_catalogue_photos_decode_bit_identically_to_the_earlier_decoder(data_root):
    """The committed results were made with convert("RGB") then a bilinear resize: same arrays, 200 photos
    across the catalogue plus every one of unusual size or mode."""
    archive = zipfile.ZipFile(data_root / "fashion-product-images-small" / "images.zip")
    names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
    odd = {"images/1799.jpg", "images/2311.jpg", "images/5408.jpg", "images/11151.jpg", "images/25299.jpg"}
    checked = 0
    for name in sorted(set(names[::len(names) // 200]) | (odd & set(names))):
        payload = archive.read(name)
        with Image.open(io.BytesIO(payload)) as img:
            earlier = img.convert("RGB")
            if earlier.size != (60, 80):
                earlier = earlier.resize((60, 80), Image.Resampling.BILINEAR)
            np.testing.assert_array_equal(decode_image(payload, name), np.asarray(earlier), err_msg=name)
        checked += 1
    assert checked >= 200


def test_grey_images_of_any_size_match_the_earlier_decoder():
    rng = np.random.default_rng(1)
    for height, width in ((37, 91), (200, 150), (80, 60)):
        for pixels in (rng.integers(0, 256, (height, width), np.uint8), rng.integers(0, 256, (height, width, 3),
                                                                                     np.uint8)):
            payload = encode(Image.fromarray(pixels))
            earlier = Image.open(io.BytesIO(payload)).convert("RGB").resize((60, 80), Image.Resampling.BILINEAR)
            np.testing.assert_array_equal(photos.decode_bytes(payload, "x", (80, 60)), np.asarray(earlier))


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(orientation):
    image = photos.decode_bytes(phone_jpeg(orientation), "phone.jpg", (80, 60))
    assert image.shape == (80, 60, 3)
    np.testing.assert_allclose(image[5, 5], (20, 200, 20), atol=12)  # green at the top, left and right
    np.testing.assert_allclose(image[5, 54], (20, 200, 20), atol=12)
    np.testing.assert_allclose(image[75, 30], (200, 0, 0), atol=12)  # red at the bottom


def test_a_damaged_exif_block_leaves_the_photo_as_stored():
    payload = phone_jpeg(6)
    start = payload.index(b"Exif\0\0")
    damaged = payload[:start + 6] + b"\xff" * 16 + payload[start + 22:]
    assert photos.decode_bytes(damaged, "x.jpg", (80, 60)).shape == (80, 60, 3)


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("P", "GIF"), ("RGBA", "WEBP")])
def test_transparent_cutouts_lie_on_the_catalogues_white(mode, fmt):
    """A red shirt cut out on transparent black, as cut-out tools export it."""
    rgba = np.zeros((80, 60, 4), np.uint8)
    rgba[20:60, 15:45] = (255, 0, 0, 255)
    image, options = Image.fromarray(rgba), {"lossless": True} if fmt == "WEBP" else {}
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = Image.fromarray(rgba[..., 3] // 255).convert("P")
        image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        options = {"transparency": 0}
    decoded = photos.decode_bytes(encode(image, fmt, **options), f"cutout.{fmt.lower()}", (80, 60))
    np.testing.assert_array_equal(decoded[5, 5], (255, 255, 255))
    assert decoded[40, 30, 0] > 70 and decoded[40, 30, 2] < 90  # the shirt stays (red, or its grey)


def test_sixteen_bit_grey_is_scaled_not_clipped_and_48_bit_rgb_kept():
    grey = np.full((80, 60), 20000, np.uint16)  # 20000 / 65535 of white
    np.testing.assert_array_equal(photos.decode_bytes(encode(Image.fromarray(grey)), "g16.png", (80, 60))[5, 5],
                                  (78, 78, 78))
    pgm = b"P5\n60 80\n65535\n" + grey.astype(">u2").tobytes()  # Pillow's mode I
    np.testing.assert_array_equal(photos.decode_bytes(pgm, "g16.pgm", (80, 60))[5, 5], (78, 78, 78))
    rgb48 = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60, 80, 16, 2, 0, 0, 0))
             + png_chunk(b"IDAT", zlib.compress((b"\0" + struct.pack(">HHH", 30000, 10000, 60000) * 60) * 80))
             + png_chunk(b"IEND", b""))
    np.testing.assert_allclose(photos.decode_bytes(rgb48, "rgb48.png", (80, 60))[5, 5], (117, 39, 233), atol=1)


def test_a_floating_point_image_is_refused_with_its_reason():
    payload = encode(Image.fromarray(np.full((8, 8), 0.5, np.float32)), "TIFF")
    with pytest.raises(DataError, match="float.tif is a floating-point image"):
        photos.decode_bytes(payload, "float.tif", (80, 60))


@pytest.mark.parametrize("width,height", [(20000, 20000), (10000, 6000)])
def test_a_decompression_bomb_is_refused_with_its_pixel_count_before_decoding(width, height):
    """20000 x 20000 is beyond Pillow's own error limit, 10000 x 6000 only beyond the series' 50 megapixels."""
    with pytest.raises(DataError, match=rf"bomb.png claims .*{width * height:,} pixels.*decompression bomb"):
        photos.decode_bytes(grey_png(width, height, whole=False), "bomb.png", (80, 60))


def test_the_refusal_holds_when_pillows_own_limit_is_changed(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's error now fires first, below our limit
    with pytest.raises(DataError, match="big.png claims 2,500 pixels"):
        photos.decode_bytes(grey_png(50, 50), "big.png", (80, 60))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow checks nothing: the series still does
    with pytest.raises(DataError, match="400,000,000 pixels"):
        photos.decode_bytes(grey_png(20000, 20000, whole=False), "bomb.png", (80, 60))


@pytest.mark.parametrize("payload,reason", [
    (png_with_damaged_chunk(), "broken PNG file"),
    (b"P6\n60 8[\n255\n" + b"\0" * 100, "invalid literal"),  # a text file that starts like a PPM
    (b"", "not an image format Pillow reads"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 60 80\n", "not an image format Pillow reads"),  # no Ghostscript
    (dds_of_unknown_pixel_format(), "Unimplemented pixel format"),  # Pillow raises NotImplementedError
])
def test_damaged_and_crafted_files_are_one_dataerror_naming_the_file(payload, reason):
    with pytest.raises(DataError, match=rf"product\.jpg cannot be decoded \(.*{reason}"):
        photos.decode_bytes(payload, "product.jpg", (80, 60))


def test_folders_pipes_and_missing_files_are_named_without_blocking(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")  # opening a pipe for reading would wait for a writer forever
    for name in ("x.jpg", "pipe.jpg"):
        with pytest.raises(DataError, match=f"{name} is not a file"):
            photos.decode_file(tmp_path / name, (80, 60))
    with pytest.raises(DataError, match="gone.jpg cannot be read .No such file"):
        photos.decode_file(tmp_path / "gone.jpg", (80, 60))


@pytest.mark.parametrize("size", [(0, 0), (-5, 10), (80.5, 60), ("80", "60"), (80,), None, (True, 60)])
def test_a_wrong_size_names_size(size):
    with pytest.raises(ValueError, match=r"size .* must be two positive whole numbers"):
        photos.decode_bytes(encode(Image.new("RGB", (6, 8))), "x.png", size)


def test_big_files_cost_little_memory(tmp_path):
    """In a fresh process: a 100-megapixel PNG of 97 KB is refused, a 48-megapixel JPEG decoded at 1/8 scale,
    and a 1.5 GB file that is no photo (sparse here) rejected from its header: none raises peak memory much."""
    (tmp_path / "big.png").write_bytes(grey_png(10000, 10000))
    Image.new("RGB", (8000, 6000), (10, 120, 200)).save(tmp_path / "phone.jpg", quality=90)
    with open(tmp_path / "video.jpg", "wb") as handle:
        handle.truncate(1500 * 2**20)
    script = """if True:
        import json, resource, sys, time, warnings
        from helpers import photos
        from helpers.fashion_mnist import DataError
        warnings.simplefilter("ignore")
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {}
        for name in sys.argv[1:]:
            began = time.perf_counter()
            try:
                ok = photos.decode_file(name, (80, 60)).shape == (80, 60, 3)
            except DataError:
                ok = False
            out[name.rsplit("/", 1)[-1]] = [ok, time.perf_counter() - began]
        out["grew_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
        print(json.dumps(out))
    """
    files = [str(tmp_path / name) for name in ("big.png", "phone.jpg", "video.jpg")]
    run = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(photos.__file__)), check=True)
    result = json.loads(run.stdout)
    assert [result[name][0] for name in ("big.png", "phone.jpg", "video.jpg")] == [False, True, False]
    assert result["video.jpg"][1] < 1.0 and result["big.png"][1] < 1.0
    assert result["grew_mib"] < 60, result  # the earlier decoder: +479 MiB for big.png, +1.5 GiB for video.jpg
