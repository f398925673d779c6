"""Bad checkpoints and converted folders: each is a one-line CheckpointError that names the file (and
the tensor or key) and what is wrong; never a crash, a bare traceback, a huge allocation or a hang.

The .pth files are forged as the fuzzing audit forged them: `Forged` pickles a tensor with a storage
and view given by hand.
"""

import json
import re
import struct
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mofgseg_jax.weights import INFO_FILE, WEIGHTS_FILE, CheckpointError, convert_file, read_converted  # noqa: E402
from mofgseg_jax.weights.readers import read_state_dict  # noqa: E402
from tests.test_weights import Forged  # noqa: E402


def _refused(path, pattern: str, read=read_state_dict, named=None) -> str:
    """The one-line message with which `read(path)` refuses the file; it starts with the path of the
    file at fault, `named` where that is not `path` itself."""
    with pytest.raises(CheckpointError) as err:
        read(path)
    message = str(err.value)
    assert message.startswith(f"{named or path}: ") and "\n" not in message, message
    assert re.search(pattern, message), message
    return message


def test_a_tensor_whose_storage_is_another_tensor_is_refused_by_name(tmp_path):
    # As the outer tensor's storage, the 4x4 inner one moved by rows: offset 3 started at element
    # 12, and 13 elements read 9 past the end (a segfault, or heap memory, with larger sizes).
    inner = Forged(torch.arange(16, dtype=torch.float32)._typed_storage(), 0, (4, 4), (4, 1))
    path = tmp_path / "nested.pth"
    torch.save({"w": Forged(inner, 3, (13,), (1,))}, path)
    _refused(path, r"tensor w is not stored in a storage of the archive")


@pytest.mark.parametrize("size, stride", [((1000, 1000), (0, 0)), ((3, 3), (1, 1))], ids=["stride_0", "overlapping"])
def test_a_view_that_reads_stored_elements_more_than_once_is_refused_by_name(tmp_path, size, stride):
    # Copied to its declared size, one stored float with stride 0 became (16000, 16000): 1 GiB.
    storage = torch.arange(6, dtype=torch.float32)._typed_storage()
    path = tmp_path / "repeat.pth"
    torch.save({"w": Forged(storage, 0, size, stride)}, path)
    _refused(path, rf"tensor w of size \({size[0]}, {size[1]}\) reads elements of its storage more than once")


def test_many_tensors_viewing_one_storage_are_refused_past_twice_its_elements(tmp_path):
    # Each view alone is fine; copied under many names, a few stored bytes would fill memory.
    storage = torch.arange(100, dtype=torch.float32)._typed_storage()
    path = tmp_path / "repeat.pth"
    torch.save({f"w{i}": Forged(storage, 0, (100,), (1,)) for i in range(3)}, path)
    _refused(path, r"its tensors hold more than 2 times the 100 elements of the storages they view")
    torch.save({f"w{i}": Forged(storage, 0, (100,), (1,)) for i in range(2)}, path)  # tied weights: fine
    assert set(read_state_dict(path)) == {"w0", "w1"}


def test_a_dict_shared_along_exponentially_many_paths_is_refused_quickly(tmp_path):
    # 2**22 paths in a 1 KB file (the memo shares each level); at depth 40 the walk took days.
    nested = {}
    for _ in range(22):
        nested = {"a": nested, "b": nested}
    path = tmp_path / "shared.pth"
    torch.save(nested, path)
    _refused(path, r"more than 1000000 entries in its nested dicts")


def test_a_dict_that_contains_itself_is_refused(tmp_path):
    cyclic = {"w": torch.zeros(2)}
    cyclic["inner"] = {"again": cyclic}
    path = tmp_path / "cycle.pth"
    torch.save(cyclic, path)
    _refused(path, r"the dict inner\.again contains itself")


def test_a_tensor_name_past_256_characters_is_refused(tmp_path):
    # One long key, shared by the memo down a nested path, would make every name built that long.
    path = tmp_path / "long.pth"
    torch.save({"k" * 200: {"k" * 200: torch.zeros(2)}}, path)
    _refused(path, r"a key path longer than 256 characters \(k{80}\.\.\. \(401 characters\)\)")


def test_tensors_under_a_key_that_is_not_a_name_are_refused(tmp_path):
    path = tmp_path / "tuple_key.pth"
    torch.save({("a", "b"): torch.zeros(2), "meta": {(1, 2): "kept aside: not a tensor"}}, path)
    _refused(path, r"a tuple key in the top-level dict holds tensors or dicts")


def _raw_safetensors(path, tensors: dict) -> None:
    """A safetensors file written byte by byte: {name: (dtype, shape, data)}, any dtype string."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("dtype, itemsize", [("C64", 8), ("F8_E4M3", 1)])
def test_a_safetensors_dtype_that_is_not_a_real_number_type_is_refused_by_name(tmp_path, dtype, itemsize):
    # C64 converted silently without its imaginary part; F8_E4M3 was called unreadable or truncated.
    path = tmp_path / "odd.safetensors"
    _raw_safetensors(path, {"patch_embed1.proj.weight": ("F32", [2], bytes(8)),
                        "norm1.weight": (dtype, [8], bytes(8 * itemsize))})
    _refused(path, rf"tensor norm1\.weight has dtype {dtype}, which this reader does not read")


def test_a_pth_of_complex_tensors_is_refused_naming_their_type(tmp_path):
    path = tmp_path / "complex.pth"
    torch.save({"w": torch.ones(3, dtype=torch.complex64)}, path)
    _refused(path, r"holds tensors of type torch\.ComplexFloatStorage, which this reader does not read")


def _rezip(src, dst, rename) -> None:
    """dst: the zip archive src with each entry renamed by `rename` (dropped where it gives None)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            if rename(info.filename) is not None:
                new.writestr(rename(info.filename), old.read(info.filename))


def test_a_zip_with_data_pkl_at_its_top_level_is_refused_as_not_a_pytorch_checkpoint(tmp_path):
    saved, path = tmp_path / "saved.pth", tmp_path / "flat.pth"
    torch.save({"w": torch.zeros(2)}, saved)
    _rezip(saved, path, lambda name: name.split("/", 1)[1])  # archive/data.pkl -> data.pkl
    _refused(path, r"zip archive with data\.pkl at its top level, not in a folder as torch\.save writes it")


def test_a_pth_that_lacks_a_tensors_data_is_refused_naming_the_entry(tmp_path):
    saved, path = tmp_path / "saved.pth", tmp_path / "partial.pth"
    torch.save({"w": torch.zeros(2)}, saved)
    _rezip(saved, path, lambda name: None if name == "saved/data/0" else name)
    _refused(path, r"the archive lacks saved/data/0, the data of a tensor")


def test_a_pth_with_a_compressed_record_is_refused_before_inflating_it(tmp_path):
    # A few deflated bytes can inflate to gigabytes; torch.save never compresses.
    saved, path = tmp_path / "saved.pth", tmp_path / "deflated.pth"
    torch.save({"w": torch.zeros(1000)}, saved)
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item), compress_type=zipfile.ZIP_DEFLATED)
    _refused(path, r"saved/data/0 is compressed, which torch\.save never does")


PATCH_EMBED = {"patch_embed1.proj.weight": np.ones((8, 3, 7, 7), np.float32)}  # the least a backbone has


def _save_safetensors(path, tensors: dict):
    from safetensors.numpy import save_file
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("name", ["patch_embed1.proj.weight", "decode_head.linear_pred.weight", "norm1.bias"])
def test_a_tensor_of_a_rank_its_name_cannot_have_is_refused_by_name(tmp_path, name):
    # A 0-d patch embedding or classifier raised IndexError in describe(), outside any handler.
    path = _save_safetensors(tmp_path / "scalar.safetensors", {**PATCH_EMBED, name: np.array(1.0, np.float32)})
    kind = name.rsplit(".", 1)[1]
    _refused(path, rf"tensor {re.escape(name)} has shape \(\); a {kind} is 1-D", read=convert_file)


@pytest.mark.parametrize("value", [np.inf, np.nan, 1e300], ids=["inf", "nan", "float64_beyond_float32"])
def test_a_tensor_with_values_that_are_not_finite_in_float32_is_refused_by_name(tmp_path, value):
    # 1e300 became inf in the float32 conversion with only a RuntimeWarning.
    bias = np.zeros(8, np.float64)
    bias[3] = value
    path = _save_safetensors(tmp_path / "inf.safetensors", {**PATCH_EMBED, "patch_embed1.proj.bias": bias})
    _refused(path, r"tensor patch_embed1\.proj\.bias holds values that are inf or NaN in float32", read=convert_file)


def test_key_and_value_tensors_of_different_shapes_are_refused_naming_both(tmp_path):
    path = _save_safetensors(tmp_path / "kv.safetensors", {**PATCH_EMBED,
                                                           "block1.0.attn.k.weight": np.ones((8, 8), np.float32),
                                                           "block1.0.attn.v.weight": np.ones((8, 4), np.float32)})
    _refused(path, r"key block1\.0\.attn\.k\.weight has shape \(8, 8\) but value block1\.0\.attn\.v\.weight has "
                   r"\(8, 4\); they must match", read=convert_file)


@pytest.mark.parametrize("name", ["block1." + "9" * 5000 + ".norm1.weight",
                                  "segformer.stages." + "9" * 5000 + ".layer_norm.weight"], ids=["mmseg", "hf"])
def test_a_name_with_a_5000_digit_index_is_an_unknown_tensor_shown_shortened(tmp_path, name):
    # int() of it raised ValueError: a traceback for the mmseg form, a message without the file for HF.
    path = _save_safetensors(tmp_path / "digits.safetensors", {**PATCH_EMBED, name: np.ones(8, np.float32)})
    message = _refused(path, r"not MiT/SegFormer tensors: .{80}\.\.\. \(\d+ characters\)$", read=convert_file)
    assert len(message) < 300


def _converted_folder(folder, tensors: dict, info: str = "{}"):
    """A folder as launch/convert_weights.py writes it: weights.safetensors ('/'-joined paths), info.json."""
    folder.mkdir()
    _save_safetensors(folder / WEIGHTS_FILE, tensors)
    (folder / INFO_FILE).write_text(info)
    return folder


def test_a_converted_folder_whose_info_json_nests_too_deep_is_refused_naming_it(tmp_path):
    # json.loads raised RecursionError, which the reader did not catch.
    folder = _converted_folder(tmp_path / "converted", {"params/backbone/x": np.zeros(2, np.float32)},
                               info="[" * 100_000 + "]" * 100_000)
    _refused(folder, r"unreadable or not JSON \(maximum recursion depth", read=read_converted,
             named=folder / INFO_FILE)


@pytest.mark.parametrize("keys", [("params/backbone/x", "params/backbone/x/y"),
                                  ("params/backbone/x/y", "params/backbone/x"), ("params", "params/backbone/x")],
                         ids=["leaf_first", "module_first", "top"])
def test_a_converted_folder_with_a_path_both_tensor_and_module_is_refused_naming_the_file(tmp_path, keys):
    # flax's unflatten_dict raised IndexError on them.
    folder = _converted_folder(tmp_path / "converted", {k: np.zeros(2, np.float32) for k in keys})
    _refused(folder, r"make one name both a tensor and a module", read=read_converted, named=folder / WEIGHTS_FILE)


def test_a_converted_folder_with_a_complex_tensor_is_refused_naming_it(tmp_path):
    # Its safetensors file was read apart from the checkpoint reader: C64 loaded, then cast to float32.
    folder = _converted_folder(tmp_path / "converted", {"params/backbone/x": np.ones(2, np.complex64)})
    _refused(folder, r"tensor params/backbone/x has dtype C64", read=read_converted, named=folder / WEIGHTS_FILE)


@pytest.mark.parametrize("names, canonical", [
    (("norm1.weight", "backbone.norm1.weight"), "backbone.norm1.weight"),
    (("block1.0.attn.kv.weight", "block1.0.attn.k.weight", "block1.0.attn.v.weight"),
     "backbone.block1.0.attn.kv.weight"),
], ids=["two_namings", "kv_and_key_value"])
def test_two_tensors_that_map_to_one_weight_are_refused_naming_both(tmp_path, names, canonical):
    # The last one silently replaced the first.
    path = _save_safetensors(tmp_path / "twice.safetensors", {**PATCH_EMBED, **{n: np.ones((8, 8), np.float32)
                                                                                 for n in names}})
    message = _refused(path, rf"tensors .* are both {re.escape(canonical)}; keep one", read=convert_file)
    assert names[0] in message and names[1] in message


def test_a_pickle_asking_for_more_memory_than_the_machine_has_says_so(tmp_path):
    # BINBYTES8 announcing 2**60 bytes: MemoryError, read as "unreadable or truncated (MemoryError)".
    path = tmp_path / "huge.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 2**60) + b".")
        archive.writestr("archive/version", "3\n")
    _refused(path, r"needs more memory than this machine has to read \(a damaged or forged file")
