"""Publish/subscribe with tiga_write / tiga_read and a follower woken by the writes.

    python examples/pubsub.py follow [IPC_DIR] [COUNT]   # prints COUNT messages, then exits
    python examples/pubsub.py publish [IPC_DIR] [COUNT]  # publishes COUNT messages
"""

import sys
import time

import tiga_cffi

CHANNEL = "news"


def publish(ipc_dir, count):
    for i in range(count):
        r = tiga_cffi.tiga_write(CHANNEL, f"headline {i}", ipc_directory=ipc_dir)
        print(f"published {r.id}", flush=True)
        time.sleep(0.05)


def follow(ipc_dir, count):
    last = tiga_cffi.tiga_read(CHANNEL, ipc_directory=ipc_dir).last_id
    seen = 0
    with tiga_cffi.create_tiga_notification_listener(CHANNEL, ipc_directory=ipc_dir) as lst:
        print("following", flush=True)
        while seen < count:
            r = tiga_cffi.tiga_read(CHANNEL, ipc_directory=ipc_dir, last_id=last)
            for e in r.entries:
                print(f"{e.id}: {e.text}", flush=True)
                seen += 1
            if r.missed:
                print(f"missed {r.missed}", flush=True)
            last = r.last_id
            if seen < count:
                lst.wait(5)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "follow"
    ipc = sys.argv[2] if len(sys.argv) > 2 else "ipc"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    (publish if role == "publish" else follow)(ipc, n)
