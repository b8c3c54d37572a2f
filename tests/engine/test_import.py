"""``import tfconf`` loads numpy and nothing heavier (the CLI and front end import their own deps)."""

import json
import subprocess
import sys

HEAVY = ("pydantic", "typer", "yaml", "torch", "scipy", "cupy", "rich")


def test_import_tfconf_loads_nothing_heavier_than_numpy():
    code = (
        "import json, sys\n"
        "import tfconf\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    mods = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "tfconf" in mods and "numpy" in mods
    loaded = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert loaded == [], f"import tfconf pulled in {loaded}"
