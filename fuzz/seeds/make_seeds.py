"""Writes one valid message of every kind as seed inputs for the fuzzers.

Run from fuzz/: python3 seeds/make_seeds.py. Layouts follow shared/src/wire.rs.
"""

import os
import struct

V = 2
FRAME = bytes([0x00] * 40 + [0x12, 0x3C, 0xD0] + [0x5A] * 837)  # 880 valid bytes
assert len(FRAME) == 880

hello = bytes([V, 0x01]) + struct.pack(">H", 4)
# task, start, count, timeline, then the scene: pose A, pose B, spin A, spin B
task = bytes([V, 0x10]) + struct.pack(">IQII", 7, 1000, 60, 0) + struct.pack(">QQqq", 0, 0, 0, 0)
task_spun = bytes([V, 0x10]) + struct.pack(">IQII", 8, 5000, 30, 3) + struct.pack(
    ">QQqq", 2**63, 12345, 2**59, -(2**58)
)
assert len(task) == 54
inputs = bytes([V, 0x03]) + struct.pack(">hh", 300, -1024)
result1 = bytes([V, 0x02]) + struct.pack(">IQI", 7, 1000, 1) + FRAME
result2 = bytes([V, 0x02]) + struct.pack(">IQI", 8, 2**40, 2) + FRAME + FRAME
frames1 = bytes([V, 0x20]) + struct.pack(">QIIB", 1000, 1, 0, 0) + FRAME
frames2 = bytes([V, 0x20]) + struct.pack(">QIIB", 2**63, 2, 7, 0) + FRAME + FRAME
telemetry = bytes([V, 0x30]) + struct.pack(
    ">QHIIIIQQQIQ", 123456, 60, 3, 10, 600, 240, 99, 990, 1, 0, 5400
)
assert len(telemetry) == 64

# Cluster tunnel messages (shared/src/wire/tunnel.rs): version 1, tag, then
# node (length byte + id) and conn for up messages, conn for down ones.
T = 1
node = bytes([2]) + b"n1"
up_open = bytes([T, 0x01]) + node + struct.pack(">Q", 7) + bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
up_data = bytes([T, 0x02]) + node + struct.pack(">Q", 7) + result1
up_close = bytes([T, 0x03]) + node + struct.pack(">Q", 7)
up_input = bytes([T, 0x04]) + node + struct.pack(">Qhh", 3, 300, -1024)
up_rejected = bytes([T, 0x05]) + node + struct.pack(">QIQ", 7, 8, 1003)
down_data = bytes([T, 0x11]) + struct.pack(">Q", 7) + task
down_close = bytes([T, 0x12]) + struct.pack(">QH", 7, 1008) + b"address banned for cheating"

seeds = {
    "tunnel": {
        "up_open": up_open,
        "up_data": up_data,
        "up_close": up_close,
        "up_input": up_input,
        "up_rejected": up_rejected,
        "down_data": down_data,
        "down_close": down_close,
    },
    "from_worker": {"hello": hello, "result1": result1, "result2": result2},
    "to_worker": {"task": task, "task_spun": task_spun, "telemetry": telemetry},
    "from_viewer": {"input": inputs},
    "to_viewer": {"frames1": frames1, "frames2": frames2, "telemetry": telemetry},
    "unpack": {"frame": FRAME, "bad": FRAME[:879] + b"\xef"},
}
here = os.path.dirname(os.path.abspath(__file__))
for target, files in seeds.items():
    os.makedirs(os.path.join(here, target), exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(here, target, name), "wb") as f:
            f.write(data)
