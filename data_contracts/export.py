"""Write the JSON Schema of every contract, so that tools outside Python can check our files.

The schemas are committed next to this module; a unit test fails when they lag the models.
Run `python -m data_contracts.export [OUT_DIR]` after changing a contract.
"""

import argparse
import json
from pathlib import Path

from data_contracts import CONTRACTS

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMA_SUFFIX = ".schema.json"


def schema_text(name: str) -> str:
    """The schema of one contract as stable text: sorted keys, so diffs show real changes only."""
    schema = CONTRACTS[name].model_json_schema()
    return json.dumps(schema, sort_keys=True, indent=2) + "\n"


def export_schemas(out_dir: Path) -> list[Path]:
    """Write `<name>.schema.json` per contract and drop schemas of contracts that are gone."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = out_dir / f"{name}{SCHEMA_SUFFIX}"
        path.write_text(schema_text(name), encoding="utf-8")
        written.append(path)
    for stale in set(out_dir.glob(f"*{SCHEMA_SUFFIX}")) - set(written):
        stale.unlink()
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: export to OUT_DIR, by default the schemas folder shipped with the package."""
    parser = argparse.ArgumentParser(
        prog="python -m data_contracts.export",
        description="Write the JSON Schema of every data contract.",
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=SCHEMA_DIR, help=f"default: {SCHEMA_DIR}"
    )
    args = parser.parse_args(argv)
    for path in export_schemas(args.out_dir):
        print(path)


if __name__ == "__main__":
    main()
