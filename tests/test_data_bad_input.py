"""Bad dataset inputs found by fuzzing: each is one `DataError`/`InputError` line naming the file (and
list line or key) and what is wrong, never another exception type or a silently wrong array."""

import io

import pytest
from PIL import Image

from mofgseg_jax.data.decode import decode_edge, decode_image
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
