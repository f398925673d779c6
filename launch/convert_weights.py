"""Convert a PyTorch / Hugging Face SegFormer checkpoint into a folder `config.model.pretrained` loads.

  python launch/convert_weights.py --src mit_b2.pth --out weights/mit_b2
  python launch/convert_weights.py --src model.safetensors --out weights/segformer_b0_ade

Accepts released ImageNet `mit_b*.pth` (backbone only), mmseg SegFormer checkpoints
(`backbone.`/`decode_head.`), published MOFGSeg checkpoints (`backbone.`, `decoder.decoder.`,
`decoder.eam.`), and Hugging Face SegformerModel / SegformerForSemanticSegmentation
(`model.safetensors`, `pytorch_model.bin` or a save_pretrained folder, current or legacy names).
Never runs pickled code.
Writes OUT/weights.safetensors and OUT/info.json, then prints a summary; refuses an OUT that holds
either file unless --overwrite.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mofgseg_jax import cli  # noqa: E402
from mofgseg_jax.errors import InputError, one_line_errors  # noqa: E402
from mofgseg_jax.outputs import check_writable, refuse_existing  # noqa: E402
from mofgseg_jax.weights import INFO_FILE, WEIGHTS_FILE, convert_file, save_converted  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="checkpoint file (.pth, .bin, .safetensors)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a conversion in --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        refuse_existing([str(out / WEIGHTS_FILE), str(out / INFO_FILE)], "--out", overwrite=args.overwrite)
        variables, info = convert_file(args.src)
        check_writable(str(out), "--out")  # after the conversion: a bad --src creates no folder
        save_converted(out, variables, info, overwrite=args.overwrite)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n_backbone = sum(v.size for v in _leaves(variables["params"].get("backbone", {})))
    n_all = sum(v.size for v in _leaves(variables))
    print(f"source:      {info['source']}")
    print(f"backbone:    {info['preset']} (dims {info['dims']}, depths {info['depths']}), "
          f"{n_backbone / 1e6:.2f}M parameters")
    if info["has_head"]:
        print(f"decode head: embed_dim {info.get('embed_dim')}, num_classes {info.get('num_classes')} "
              "(loaded when the model's class count matches, or with model.reinit_classifier=True)")
        if "rep_dim" in info:
            print(f"             representation head rep_dim {info['rep_dim']}")
    else:
        print("decode head: none (backbone only; the decoder starts from its initialisation)")
    if info.get("has_boundary"):
        print(f"boundary:    EAM included, widths {info.get('eam_low_dim')} / {info.get('eam_high_dim')} / "
              f"{info.get('eam_mid_dim')} (model.eam_low_dim / eam_high_dim / eam_mid_dim; published 64 / 256 / 256)")
    else:
        print("boundary:    none (starts from its initialisation)")
    print(f"tensors:     {info['num_tensors']} ({n_all / 1e6:.2f}M values)")
    if info["preset"] == "custom":  # no preset matches: name its dims and depths instead
        model_keys = f"config.model.dims={tuple(info['dims'])}, config.model.depths={tuple(info['depths'])}"
        if "embed_dim" in info:
            model_keys += f", config.model.embed_dim={info['embed_dim']}"
    else:
        model_keys = f"config.model.backbone={info['preset']}"
    print(f"written:     {out}  ->  set config.model.pretrained={out} and {model_keys}")
    print("note:        LayerNorm eps is a model setting, not a weight: released mit_b* weights use "
          "block_ln_eps=1e-6 (the default); Hugging Face SegFormer computes with 1e-5")
    return 0


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


if __name__ == "__main__":
    with one_line_errors():
        sys.exit(main())
