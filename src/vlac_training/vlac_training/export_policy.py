"""Export a compact policy model directory to ONNX, checked against torch.

  export_policy_onnx --model MODEL_DIR --out OUT_DIR

Writes ``OUT_DIR/policy.onnx`` (inputs ``frames`` (B, cameras, S, S, 3) uint8, ``state``
(B, 7) float32, ``task`` (B, 384) float32 sentence embedding; output ``outputs``
(B, sum(bins) + 1): every action dimension's bin logits, then the value), a copy of
``config.json`` naming the graph and the check's tolerance, and ``model_card.md``. The graph is
compared with torch through onnxruntime on random inputs; a difference above 1e-4 fails the
export (exit status 1) and leaves nothing in ``OUT_DIR``. With ``--out`` equal to ``--model``
the graph lands next to the weights, where ``vlac_policy_node`` with ``runtime: onnx`` takes it
as its template instead of exporting one at configure (which takes seconds).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

from vlac_models.policy.base import PolicyError
from vlac_models.policy.compact import (
    CARD_FILE,
    CONFIG_FILE,
    ONNX_FILE,
    ONNX_TOLERANCE,
    export_onnx,
    load_compact_policy,
)


def export_model(model_dir: str | pathlib.Path, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Export ``model_dir`` into ``out_dir`` (created); return the ONNX file's path.

    PolicyError for a bad model directory, RuntimeError when the graph does not match torch.
    """
    policy = load_compact_policy(model_dir)
    out = pathlib.Path(out_dir)
    staging = out.parent / f'.{out.name}.onnx-export'
    shutil.rmtree(staging, ignore_errors=True)
    try:
        export_onnx(policy, staging)
        config = dict(policy.model_config)
        config['onnx'] = {'file': ONNX_FILE, 'inputs': ['frames', 'state', 'task'],
                          'output': 'outputs', 'checked_tolerance': ONNX_TOLERANCE}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + '\n')
        card = pathlib.Path(model_dir) / CARD_FILE
        if card.is_file():
            shutil.copyfile(card, staging / CARD_FILE)
        out.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            item.replace(out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / ONNX_FILE


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='compact policy model directory')
    parser.add_argument('--out', required=True, help='output directory for policy.onnx')
    args = parser.parse_args(argv)
    try:
        path = export_model(args.model, args.out)
    except PolicyError as err:
        print(f'export_policy_onnx: {err}', file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f'export_policy_onnx: {err}', file=sys.stderr)
        return 1
    print(f'export_policy_onnx: wrote {path} (onnxruntime matches torch within '
          f'{ONNX_TOLERANCE})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
