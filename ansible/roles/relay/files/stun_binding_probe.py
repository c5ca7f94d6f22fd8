#!/usr/bin/env python3
"""STUN Binding probe (RFC 8489) for teletip-relay, standard library only.

Sends a Binding request (type 0x0001, magic cookie 0x2112A442, random transaction id) over UDP,
TCP or TLS (--transport) and waits for the matching Binding success response (type 0x0101,
same cookie and transaction id). Retries until --timeout seconds have passed, so it doubles as
"wait until the relay answers" after a (re)start. Exit status 0 on success, 1 otherwise; one
line of output either way, naming the XOR-MAPPED-ADDRESS the relay saw and, over TLS, the
SHA-256 fingerprint of the certificate it served. Over TLS the certificate is not verified:
the probe asks whether the relay serves TLS, and which certificate; clients check the name.

    python3 stun_binding_probe.py --host 127.0.0.1 --port 3478 --timeout 30
    python3 stun_binding_probe.py --transport tls --host 127.0.0.1 --port 5349
"""

import argparse
import hashlib
import os
import socket
import ssl
import struct
import sys
import time

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020


def xor_mapped_address(body, txid):
    """The XOR-MAPPED-ADDRESS attribute of a response body as "ip:port", or None."""
    offset = 0
    while offset + 4 <= len(body):
        attr_type, attr_len = struct.unpack_from("!HH", body, offset)
        value = body[offset + 4:offset + 4 + attr_len]
        offset += 4 + attr_len + (-attr_len % 4)
        if attr_type != XOR_MAPPED_ADDRESS or len(value) < 8:
            continue
        family = value[1]
        port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
        key = struct.pack("!I", MAGIC_COOKIE) + txid
        if family == 0x01:
            raw = bytes(a ^ b for a, b in zip(value[4:8], key[:4]))
            return "%s:%d" % (socket.inet_ntop(socket.AF_INET, raw), port)
        if family == 0x02 and len(value) >= 20:
            raw = bytes(a ^ b for a, b in zip(value[4:20], key))
            return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw), port)
    return None


def judge(data, txid):
    """(True, detail) for a Binding success response to txid, (False, why) for another answer,
    None for a message that answers something else."""
    if len(data) < 20 or data[8:20] != txid:
        return None
    msg_type, msg_len, cookie = struct.unpack_from("!HHI", data)
    if cookie != MAGIC_COOKIE:
        return False, "answer without the magic cookie (0x%08x)" % cookie
    if msg_type != BINDING_SUCCESS:
        return False, "answer of type 0x%04x, not a Binding success (0x0101)" % msg_type
    mapped = xor_mapped_address(data[20:20 + msg_len], txid)
    return True, "XOR-MAPPED-ADDRESS %s" % (mapped or "absent")


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise OSError("the relay closed the connection")
        data += chunk
    return data


def probe_once(host, port, wait, transport="udp"):
    """One request; returns (True, detail) on a Binding success response, else (False, why)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    txid = os.urandom(12)
    request = struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + txid
    deadline = time.monotonic() + wait
    try:
        if transport == "udp":
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(wait)
                sock.sendto(request, (host, port))
                while True:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    data, _ = sock.recvfrom(2048)
                    verdict = judge(data, txid)
                    if verdict is not None:
                        return verdict
        # TCP and TLS: STUN messages on a stream, each a 20-byte header and its length of body.
        with socket.create_connection((host, port), timeout=wait) as raw:
            sock, served = raw, ""
            if transport == "tls":
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(raw, server_hostname=host)
                der = sock.getpeercert(binary_form=True) or b""
                served = "; certificate sha256 %s" % ":".join("%02X" % b for b in hashlib.sha256(der).digest())
            sock.sendall(request)
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                header = read_exactly(sock, 20)
                data = header + read_exactly(sock, struct.unpack_from("!H", header, 2)[0])
                verdict = judge(data, txid)
                if verdict is not None:
                    return verdict[0], verdict[1] + served
    except socket.timeout:
        return False, "no answer within %.1f s" % wait
    except (OSError, ssl.SSLError) as err:
        return False, str(err)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3478)
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")
    parser.add_argument("--interval", type=float, default=1.0, help="wait per attempt")
    args = parser.parse_args()
    start = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        began = time.monotonic()
        ok, detail = probe_once(args.host, args.port, args.interval, args.transport)
        elapsed = time.monotonic() - start
        if ok:
            print("STUN Binding success from %s:%d (%s) after %d attempt(s), %.2f s; %s"
                  % (args.host, args.port, args.transport, attempts, elapsed, detail))
            return 0
        if elapsed >= args.timeout:
            print("no STUN Binding success from %s:%d (%s) after %d attempt(s), %.1f s: %s"
                  % (args.host, args.port, args.transport, attempts, elapsed, detail))
            return 1
        # An attempt that failed fast (an ICMP error, a refused send) waits out its interval.
        time.sleep(max(0.0, min(args.interval - (time.monotonic() - began), args.timeout - elapsed)))


if __name__ == "__main__":
    sys.exit(main())
