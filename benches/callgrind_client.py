#!/usr/bin/env python3
"""Keep-alive HTTP/1.1 client for benches/callgrind.sh: sends exactly N requests over C
connections (each connection sends its next request when the previous answer is complete)
and checks every status. Standard library only.

    callgrind_client.py HOST:PORT PATH N CONNS STATUS ['Header: value']
"""

import selectors
import socket
import sys


def main() -> int:
    addr, path, total, conns, want = sys.argv[1:6]
    extra = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else ""
    host, port = addr.rsplit(":", 1)
    total, conns, want = int(total), int(conns), int(want)
    head = f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: callgrind-client\r\n"
    if extra:
        head += extra + "\r\n"
    request = (head + "\r\n").encode()

    sel = selectors.DefaultSelector()
    sent = done = 0
    bad = []
    buffers = {}

    def send(sock):
        nonlocal sent
        sock.sendall(request)
        sent += 1

    for _ in range(min(conns, total)):
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffers[s] = b""
        sel.register(s, selectors.EVENT_READ)
        send(s)

    while done < total:
        events = sel.select(timeout=120)
        if not events:
            print(f"no answer for 120 s ({done} of {total} done)", file=sys.stderr)
            return 1
        for key, _ in events:
            s = key.fileobj
            chunk = s.recv(65536)
            if not chunk:
                print("connection closed by the server", file=sys.stderr)
                return 1
            buf = buffers[s] + chunk
            # Every complete response in the buffer.
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                lines = buf[:end].decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if len(buf) < end + 4 + length:
                    break
                status = int(lines[0].split()[1])
                if status != want and len(bad) < 5:
                    bad.append(status)
                buf = buf[end + 4 + length :]
                done += 1
                if sent < total:
                    send(s)
            buffers[s] = buf
    for s in buffers:
        s.close()
    if bad:
        print(f"expected {want}, got {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
