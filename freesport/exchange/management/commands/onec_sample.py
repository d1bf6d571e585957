"""Write a generated CommerceML 3.1 exchange package for demos and benchmarks."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from worker.commerceml.sample import write_sample_package


class Command(BaseCommand):
    help = (
        "Write a deterministic CommerceML 3.1 segmented package (classifier, goods "
        "with properties and pictures, offers, prices, stock) to OUTDIR."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("outdir", type=Path, help="folder to write the package to")
        parser.add_argument("--goods", type=int, required=True, help="number of goods")
        parser.add_argument(
            "--seed", type=int, default=1, help="random seed (same seed, same bytes)"
        )
        parser.add_argument(
            "--goods-per-file",
            type=int,
            default=5000,
            help="goods per goods_*.xml segment",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the counts as JSON"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["goods"] < 1:
            raise CommandError("--goods must be at least 1")
        outdir: Path = options["outdir"]
        if outdir.exists() and any(outdir.iterdir()):
            raise CommandError(f"{outdir} is not empty; choose a new folder")
        summary = write_sample_package(
            outdir,
            options["goods"],
            seed=options["seed"],
            goods_per_file=options["goods_per_file"],
        )
        counts = {k: v for k, v in asdict(summary).items() if k != "files"}
        if options["json"]:
            self.stdout.write(json.dumps(counts, indent=2))
            return
        self.stdout.write(f"Wrote {len(summary.files)} files to {outdir}")
        for key, value in counts.items():
            self.stdout.write(f"  {key}: {value}")
