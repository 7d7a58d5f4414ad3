"""The emulator's request log (moto's recorder, JSON lines), read so that no request is lost.

moto's threads append entries with buffered writes, so under load a long entry is sometimes
split around a short one, which then sits mid-line after a fragment: every complete entry on a
line is recovered (a fragment is not an entry and is dropped)."""

import json
import os

_DECODER = json.JSONDecoder()


def entries(path=None):
    path = path or os.environ.get("SELFHEAL_EMULATOR_REQUEST_LOG")
    if not path or not os.path.exists(path):
        return []
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                out.append(json.loads(line))
                continue
            except ValueError:
                pass
            start = line.find('{"headers"')
            while start != -1:
                try:
                    out.append(_DECODER.raw_decode(line, start)[0])
                except ValueError:
                    pass
                start = line.find('{"headers"', start + 1)
    return out
