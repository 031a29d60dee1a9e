"""`mtpb sandbox check`: canary programs that show the sandbox's limits hold."""
from __future__ import annotations

from mtpb.scoring import verdict

CANARIES = [
    ("prints a value", "print(6 * 7)", "passed", 42),
    ("numpy and pandas import", "import numpy as np\nimport pandas as pd\nprint(int(pd.Series([1, 2]).sum() + np.int64(1)))", "passed", 4),
    ("scikit-learn imports (original problems 14, 46)", "import sklearn\nprint(sklearn.__name__)", "passed", "sklearn"),
    ("runs as an unprivileged user", "import os\nprint(os.getuid() != 0 and os.geteuid() != 0)", "passed", True),
    ("no network", "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('1.1.1.1', 53))\nprint('connected')",
     "error", None),
    ("wall-clock timeout", "while True:\n    pass", "timeout", None),
    ("memory limit", "x = bytearray(8 << 30)\nprint(len(x))", "killed", None),
    ("no writes outside /tmp", "open('/usr/mtpb-canary', 'w').write('x')\nprint('wrote')", "error", None),
]


def run_checks(sandbox) -> list[dict]:
    replies = sandbox.run([program for _, program, _, _ in CANARIES])
    rows = []
    for (name, _, expected_status, expected), reply in zip(CANARIES, replies):
        v = verdict(reply, expected, "mtpb")
        rows.append({"check": name, "expected": expected_status, "got": v.status + (f" ({v.error})" if v.error and
                     v.status != expected_status else ""), "ok": v.status == expected_status})
    return rows
