"""Writes one valid message of every kind as seed inputs for the fuzzers.

Run from fuzz/: python3 seeds/make_seeds.py. Layouts follow shared/src/wire.rs.
"""

import os
import struct

V = 6
# A frame with a valid layout (shared/src/frame.rs: a newline, code 13, in
# the last column of each of the 22 rows of 80, blanks elsewhere; what can
# be drawn where is the fuzzer's to find): two codes a byte, the first in
# the high nibble.
ROW = [0] * 79 + [13]
CODES = ROW * 22
FRAME = bytes(CODES[k] << 4 | CODES[k + 1] for k in range(0, len(CODES), 2))
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
# Codec 2 (primed, protocol 6): the codec seed's range-coded payload (its
# first byte is the fuzzer's frame count), read as a primed batch.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "codec", "three_frames"), "rb") as f:
    CODED = f.read()
frames_primed = bytes([V, 0x20]) + struct.pack(">QIIB", 5000, CODED[0] % 16 + 1, 4, 2) + CODED[1:]
telemetry = bytes([V, 0x30]) + struct.pack(
    ">QHIIIIQQQIQIHQI", 123456, 60, 3, 10, 600, 240, 99, 990, 1, 0, 5400, 7, 650, 3, 1
)
assert len(telemetry) == 82

# The peer relay (shared/src/wire/p2p.rs).
peering_on = bytes([V, 0x04, 1])
peering_off = bytes([V, 0x04, 0])
SDP = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host\r\na=mid:0\r\n"
CANDIDATE = b"candidate:842163049 1 udp 1677729535 192.0.2.7 53219 typ srflx raddr 0.0.0.0 rport 0"
signal_offer = bytes([V, 0x05]) + struct.pack(">QB", 2, 1) + SDP
signal_answer = bytes([V, 0x05]) + struct.pack(">QB", 1, 2) + SDP
signal_candidate = bytes([V, 0x05]) + struct.pack(">QB", 1, 3) + CANDIDATE
signal_end = bytes([V, 0x05]) + struct.pack(">QB", 1, 3)
link_up = bytes([V, 0x06]) + struct.pack(">QB", 1, 1)
link_down = bytes([V, 0x06]) + struct.pack(">QB", 1, 0)
fetch = bytes([V, 0x07]) + struct.pack(">QI", 1000, 2)
keyframe = bytes([V, 0x24]) + struct.pack(">QII", 1000, 3, 12) + struct.pack(">QQqq", 1, 2, 5 << 48, -(7 << 48))
report = bytes([V, 0x08]) + struct.pack(">QQI", 1, 1000, 2)
proof = bytes([V, 0x09]) + struct.pack(">QI", 1000, 2) + bytes(range(16))
digest = bytes([V, 0x21]) + struct.pack(">QIII", 1000, 15, 2, 1400) + bytes(range(32))
welcome = bytes([V, 0x22]) + struct.pack(">Q", 5) + b"stun:stun.example.org:3478,turn:t.example.org"
welcome_bare = bytes([V, 0x22]) + struct.pack(">Q", 5)
assign = bytes([V, 0x23]) + struct.pack(">QQ", 1, 0)
input_refused = bytes([V, 0x31, 1])
assert len(digest) == 2 + 20 + 32 and len(assign) == 18 and len(report) == 22

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
    "from_viewer": {
        "input": inputs,
        "peering_on": peering_on,
        "peering_off": peering_off,
        "signal_offer": signal_offer,
        "signal_candidate": signal_candidate,
        "signal_end": signal_end,
        "link_up": link_up,
        "link_down": link_down,
        "fetch": fetch,
        "report": report,
        "proof": proof,
    },
    "to_viewer": {
        "frames1": frames1,
        "frames2": frames2,
        "frames_primed": frames_primed,
        "telemetry": telemetry,
        "digest": digest,
        "welcome": welcome,
        "welcome_bare": welcome_bare,
        "assign": assign,
        "input_refused": input_refused,
        "keyframe": keyframe,
        "signal_answer": signal_answer,
        "signal_candidate": signal_candidate,
    },
    "unpack": {"frame": FRAME, "bad": FRAME[:879] + b"\xef"},
}
here = os.path.dirname(os.path.abspath(__file__))
for target, files in seeds.items():
    os.makedirs(os.path.join(here, target), exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(here, target, name), "wb") as f:
            f.write(data)
