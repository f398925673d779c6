"""Bad dataset inputs found by fuzzing: each is one `DataError`/`InputError` line naming the file (and
list line or key) and what is wrong, never another exception type or a silently wrong array."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mofgseg_jax.data.decode import decode_edge, decode_image, decode_mask
from mofgseg_jax.data.errors import DataError


def _tiff(mode, colour):
    buf = io.BytesIO()
    Image.new(mode, (4, 3), colour).save(buf, format="TIFF")
    return buf.getvalue()


def _premultiplied_la_tiff():
    """A grey + alpha TIFF whose ExtraSamples says premultiplied (1): PIL opens it as mode 'La'."""
    data = _tiff("LA", (7, 200))
    unassociated = bytes.fromhex("5201 0300 01000000 0200")  # tag 338, SHORT, count 1, value 2
    assert data.count(unassociated) == 1
    return data.replace(unassociated, bytes.fromhex("5201 0300 01000000 0100"))


@pytest.mark.parametrize("decode, data, kind, mode", [
    (decode_image, _premultiplied_la_tiff(), "image", "La"),
    (decode_edge, _premultiplied_la_tiff(), "edge map", "La"),
    (decode_edge, _tiff("LAB", (50, 1, 2)), "edge map", "LAB"),
], ids=["premultiplied-grey-image", "premultiplied-grey-edge", "lab-edge"])
def test_a_mode_pil_cannot_convert_is_an_error_naming_file_and_mode(decode, data, kind, mode):
    with pytest.raises(DataError, match=rf"^a\.tif \(v\.txt line 2\): {kind} has PIL mode '{mode}', which PIL "
                                        r"cannot convert"):
        decode(data, path="a.tif", where="v.txt line 2")


def _png_16_bit(ids, colour_type, channels):
    """A 16-bit PNG (PIL cannot write colour ones) with every channel of each pixel = `ids`."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = ids.shape
    rows = b"".join(b"\0" + np.repeat(row, channels).astype(">u2").tobytes() for row in ids)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (4, 2), (6, 4)], ids=["rgb", "grey-alpha", "rgba"])
@pytest.mark.parametrize("decode, kind", [
    (lambda data, **kw: decode_mask(data, num_classes=5, **kw), "mask"),
    (decode_image, "image"),
    (decode_edge, "edge map"),
], ids=["mask", "image", "edge"])
def test_a_16_bit_colour_png_is_refused_not_cut_to_its_high_byte(colour_type, channels, decode, kind):
    # PIL opens these as 8-bit 'RGB'/'RGBA' holding each sample's high byte: ids 0..4 would all be 0.
    data = _png_16_bit(np.arange(12).reshape(3, 4) % 5, colour_type, channels)
    with pytest.raises(DataError, match=rf"^m\.png \(l\.txt line 1\): {kind} has 16 bits a channel, which PIL "
                                        r"reads as 8-bit mode 'RGBA?'"):
        decode(data, path="m.png", where="l.txt line 1")

