"""kill -9 at the worst moments (issue 14): writers and readers in several processes
are SIGKILLed at random points, one of them while holding the append lock, and
restarted. Afterwards every id is unique, nothing any process read was something no
writer wrote, and every write that returned is in the log. Bounded: about 8 s."""

import os
import random
import time

from peers import CTX, soak_lock_holder, soak_reader, soak_writer

import tiga_cffi

NAME = "soak"
WRITERS, READERS = 3, 2
DURATION = 6.0


def lines(path):
    """The complete lines of a log (a killed process may leave half a line)."""
    if not os.path.exists(path):  # killed before it opened its log
        return []
    with open(path) as f:
        text = f.read()
    return text.split("\n")[:-1]


def test_kill_9_soak(ipc_dir, tmp_path):
    tiga_cffi.Channel(NAME, ipc_directory=ipc_dir, capacity=16 << 20).close()
    d = str(ipc_dir)
    rng = random.Random(1234)  # the kill schedule is fixed; only the timing varies
    procs = {}
    logs = []

    def start(kind, k):
        log = str(tmp_path / f"{kind}{k}-{len(logs)}.log")
        logs.append(log)
        if kind == "w":
            p = CTX.Process(target=soak_writer, args=(d, NAME, k, log), daemon=True)
        else:
            p = CTX.Process(target=soak_reader, args=(d, NAME, log), daemon=True)
        p.start()
        procs[(kind, k)] = p

    kills = lock_kills = 0
    try:
        for k in range(WRITERS):
            start("w", k)
        for k in range(READERS):
            start("r", k)
        deadline = time.monotonic() + DURATION
        # where processes start slowly (wine: about 0.5 s each) it goes on until the
        # kills the assertions below need have happened, for at most a minute more
        while time.monotonic() < deadline or (
                (kills < 10 or lock_kills < 1) and time.monotonic() < deadline + 60):
            time.sleep(rng.uniform(0.05, 0.25))
            if rng.random() < 0.15:
                # a process dies holding the append lock: the others must go on
                ready = CTX.Event()
                h = CTX.Process(target=soak_lock_holder, args=(d, NAME, ready), daemon=True)
                h.start()
                try:
                    assert ready.wait(30)
                    time.sleep(rng.uniform(0.0, 0.1))
                finally:
                    h.kill()
                    h.join(10)
                lock_kills += 1
                continue
            key = rng.choice(sorted(procs))
            procs[key].kill()
            procs[key].join(10)
            kills += 1
            start(*key)
        time.sleep(0.3)
    finally:
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.join(10)

    tried, done, seen = set(), {}, []
    for log in logs:
        for ln in lines(log):
            kind, rest = ln.split(" ", 1)
            if kind == "try":
                tried.add(rest)
            elif kind == "done":
                eid, msg = rest.split(" ", 1)
                done[msg] = int(eid)
            else:
                eid, msg = rest.split(" ", 1)
                seen.append((int(eid), msg))
    with tiga_cffi.Channel(NAME, ipc_directory=ipc_dir) as ch:
        final = ch.read(0)
    ids = [e.id for e in final.entries]
    msgs = [e.message.decode() for e in final.entries]
    assert kills >= 10 and lock_kills >= 1 and len(done) > 1000, (kills, lock_kills, len(done))
    assert ids == sorted(set(ids)), "ids must be unique and increasing"
    assert final.missed == 0 and ids[0] == 1 and ids == list(range(1, len(ids) + 1))
    assert len(set(msgs)) == len(msgs), "an entry was written twice"
    assert set(msgs) <= tried, "the log holds a message no writer wrote"
    by_id = dict(zip(ids, msgs))
    for msg, eid in done.items():  # every write that returned is there, under its id
        assert by_id.get(eid) == msg, (eid, msg)
    for eid, msg in seen:  # what readers got is what the log holds
        assert by_id.get(eid) == msg, (eid, msg)
