"""`n1v1 kube serve-config`: write (or check) the RayService's serveConfigV2 from serve_config.yaml.

Run from the repository root after changing serve_config.yaml, then `kubectl apply -k` an overlay:
the RayService applies a changed serveConfigV2 in place (no new cluster). `--check` changes
nothing and exits 1 when the committed file is stale (n1v1/kube.py has the cluster changes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from n1v1.cli.common import EXIT_OK

EXIT_STALE = 1


def add_kube_command(sub: Any) -> None:
    kube = sub.add_parser("kube", help="Kubernetes (KubeRay) deployment helpers")
    ksub = kube.add_subparsers(dest="kube_command", required=True, metavar="ACTION")
    p = ksub.add_parser(
        "serve-config",
        help="generate the RayService's serveConfigV2 from serve_config.yaml",
        description="Write the kustomize patch that sets the RayService's serveConfigV2: "
        "serve_config.yaml plus the cluster changes listed in the file's header.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=Path("serve_config.yaml"),
        help="the Serve config (default: serve_config.yaml)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("kuberay/base/serve-config.yaml"),
        help="the patch to write (default: kuberay/base/serve-config.yaml)",
    )
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if --out is out of date"
    )
    p.set_defaults(handler=cmd_kube_serve_config)


def cmd_kube_serve_config(args: argparse.Namespace) -> int:
    from n1v1.kube import render_serve_config_patch

    text = render_serve_config_patch(args.config)
    current = args.out.read_text() if args.out.is_file() else None
    if args.check:
        if current != text:
            print(
                f"n1v1: {args.out} is out of date with {args.config}: run "
                f"`n1v1 kube serve-config --config {args.config} --out {args.out}`",
                file=sys.stderr,
            )
            return EXIT_STALE
        print(f"{args.out} is up to date with {args.config}")
        return EXIT_OK
    if current == text:
        print(f"{args.out} is up to date with {args.config}")
        return EXIT_OK
    args.out.write_text(text)
    print(f"wrote {args.out} from {args.config}")
    return EXIT_OK
