"""An echo server: answers every method with the data it was sent.

    python examples/echo_server.py [IPC_DIR]      (Ctrl-C stops it)
"""

import sys

import tiga_cffi


def handle(method, data, context):
    if method == "upper":
        return str(data).upper()
    if method == "fail":
        raise ValueError(f"asked to fail with {data!r}")
    return data


def main(ipc_dir):
    with tiga_cffi.start_tiga_server("echo", ipc_dir, handle) as server:
        print(f"serving 'echo' in {server.ipc_directory}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    try:
        main(sys.argv[1] if len(sys.argv) > 1 else "ipc")
    except KeyboardInterrupt:
        pass
