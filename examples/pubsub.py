"""Publish/subscribe: tiga_write, and a follower that subscribes to the channel.

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
    with tiga_cffi.Channel(CHANNEL, ipc_directory=ipc_dir) as ch, \
            ch.subscribe(missed="count") as sub:  # from now on, woken by each write
        print("following", flush=True)
        for seen, e in enumerate(sub, 1):
            print(f"{e.id}: {e.text}", flush=True)
            if seen == count:
                break
        if sub.missed:
            print(f"missed {sub.missed}", flush=True)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "follow"
    ipc = sys.argv[2] if len(sys.argv) > 2 else "ipc"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    (publish if role == "publish" else follow)(ipc, n)
