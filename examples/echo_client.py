"""A client of examples/echo_server.py.

    python examples/echo_client.py [IPC_DIR]
"""

import sys

import tiga_cffi


def main(ipc_dir):
    with tiga_cffi.Client("echo", ipc_directory=ipc_dir, timeout=10) as client:
        print(client.invoke("echo", "hello"))
        print(client.invoke("upper", "shout"))
        try:
            client.invoke("fail", "on purpose")
        except tiga_cffi.RemoteError as e:
            print(f"remote error: {e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ipc")
