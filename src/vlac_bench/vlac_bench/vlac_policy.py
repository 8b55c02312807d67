"""Timing of the vlac (InternVL) policy backend per action; prints JSON figures."""

from __future__ import annotations

import sys
from typing import Sequence

import torch
from vlac_models.policy.vlac_backend import benchmark_vlac_policy


def main(argv: Sequence[str] | None = None) -> int:
    """``benchmark_vlac_policy MODEL_DIR [--device cuda] [--repeats 50]``: ms per action.

    ``--make-full-size DIR`` first writes a randomly initialised InternVL2-2B-sized checkpoint
    there (``vlac_testing.tiny_internvl.make_full_size_internvl``) and benchmarks it.
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument('model_dir', help='converted VLAC checkpoint directory')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--repeats', type=int, default=20, help='timed actions')
    parser.add_argument('--views', type=int, default=1, help='camera views per observation')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: keep)')
    parser.add_argument('--make-full-size', action='store_true',
                        help='first write a random full-size (~2.2B) checkpoint to model_dir')
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.make_full_size:
        from vlac_testing.tiny_internvl import make_full_size_internvl

        make_full_size_internvl(args.model_dir)
    figures = benchmark_vlac_policy(args.model_dir, args.device, args.repeats,
                                    num_views=args.views)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
