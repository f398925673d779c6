"""Bad dataset inputs found by fuzzing: each is one `DataError`/`InputError` line naming the file (and
list line or key) and what is wrong, never another exception type or a silently wrong array."""

import codecs
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mofgseg_jax.data.decode import decode_edge, decode_image, decode_mask
from mofgseg_jax.data.errors import DataError
from mofgseg_jax.data.splits import parse_list, read_list
from tests.test_data_splits import SPLITS


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


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    # Some Windows editors start UTF-8 text with one; the first image was then "not found".
    (tmp_path / "l.txt").write_bytes(codecs.BOM_UTF8 + b"img/a.jpg mask/a.png\n")
    assert [(e.image, e.mask) for e in read_list(str(tmp_path / "l.txt"))] == [("img/a.jpg", "mask/a.png")]


@pytest.mark.parametrize("separator", ["\x0c", "\x1c", "\x85", "\u2028"])
def test_only_newline_or_crlf_ends_a_list_line_so_messages_give_the_files_line(separator):
    # str.splitlines also ends a line at these: the error below was reported on "line 3".
    text = f"a.jpg a.png{separator}\r\nb.jpg\r\n"
    with pytest.raises(DataError, match=r"^l\.txt line 2: expected '<image> <mask>', got 'b\.jpg'$"):
        parse_list(text, list_file="l.txt")


def test_a_lone_carriage_return_ends_a_list_line_as_in_classic_mac_text(tmp_path):
    # It read as one line of four paths: "expected '<image> <mask>'".
    (tmp_path / "l.txt").write_bytes(b"a.jpg a.png\rb.jpg b.png\r\xff\r")
    assert [(e.image, e.line) for e in parse_list("a.jpg a.png\rb.jpg b.png\r")] == [("a.jpg", 1), ("b.jpg", 2)]
    with pytest.raises(DataError, match=r"l\.txt line 3: split list is not UTF-8 text"):
        read_list(str(tmp_path / "l.txt"))


@pytest.mark.parametrize("line", ["../x.jpg m.png", "a.jpg /etc/hosts", "img/../../x.jpg m.png", "/abs/a.jpg m.png"])
def test_a_list_path_outside_the_dataset_root_is_refused_naming_file_and_line(line):
    with pytest.raises(DataError, match=r"^l\.txt line 2: \S+ is not inside the dataset root"):
        parse_list(f"a.jpg a.png\n{line}\n", list_file="l.txt")


@pytest.mark.skipif(not SPLITS.is_dir(), reason="../shared/splits not present")
def test_every_published_list_is_accepted_as_it_is():
    lists = sorted(SPLITS.rglob("*.txt"))
    assert lists and all(read_list(str(path)) for path in lists)
