"""Receiving many UDP datagrams per system call: ``recvmmsg(2)`` through ctypes (Linux), for the collector."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
import sys

MAX_DATAGRAM = 65535


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32), ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t), ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_MSG_DONTWAIT = 0x40
_MSG_TRUNC = 0x20
_SOCKADDR = 128


class BatchReceiver:
    """``recvmmsg(2)`` through ctypes: up to ``slots`` datagrams per system call (Linux).

    One system call per batch instead of one per datagram matters twice in Python: it is cheaper,
    and the receiving thread gives up the GIL once per batch rather than once per datagram.
    Falls back to ``recvfrom`` where ``recvmmsg`` is missing.
    """

    def __init__(self, sock: socket.socket, slots: int = 512, slot_size: int = 65536):
        self.sock = sock
        self.slots = slots
        self.slot_size = slot_size
        self._recvmmsg = None
        self._addresses: dict[bytes, tuple[str, int]] = {}
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
                self._recvmmsg = libc.recvmmsg
                self._recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
                self._recvmmsg.restype = ctypes.c_int
            except (OSError, AttributeError):
                self._recvmmsg = None
        if self._recvmmsg is not None:
            self._buffer = ctypes.create_string_buffer(slots * slot_size)
            self._names = ctypes.create_string_buffer(slots * _SOCKADDR)
            self._iov = (_Iovec * slots)()
            self._msgs = (_Mmsghdr * slots)()
            base = ctypes.addressof(self._buffer)
            names = ctypes.addressof(self._names)
            for i in range(slots):
                self._iov[i].iov_base = base + i * slot_size
                self._iov[i].iov_len = slot_size
                hdr = self._msgs[i].msg_hdr
                hdr.msg_name = names + i * _SOCKADDR
                hdr.msg_iov = ctypes.pointer(self._iov[i])
                hdr.msg_iovlen = 1
            self._view = memoryview(self._buffer).cast("B")
            self._names_view = memoryview(self._names).cast("B")
        self.truncated = 0

    def receive(self) -> tuple[list[bytes], list[tuple[str, int]]]:
        """(payloads, sender addresses) of every datagram waiting now, up to ``slots``.

        Two flat lists, and address tuples shared between datagrams: bytes objects are not
        tracked by Python's cyclic garbage collector, so a backlog of datagrams does not make its
        collections (which stop every thread) long.
        """
        payloads: list[bytes] = []
        senders: list[tuple[str, int]] = []
        if self._recvmmsg is None:
            for _ in range(self.slots):
                try:
                    data, address = self.sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                payloads.append(data)
                senders.append(self._addresses.setdefault(address[:2], address[:2]))
            return payloads, senders
        for i in range(self.slots):
            self._msgs[i].msg_hdr.msg_namelen = _SOCKADDR
        n = self._recvmmsg(self.sock.fileno(), self._msgs, self.slots, _MSG_DONTWAIT, None)
        if n <= 0:
            if n < 0 and ctypes.get_errno() not in (11, 4):  # EAGAIN, EINTR
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            return payloads, senders
        view, names, size = self._view, self._names_view, self.slot_size
        addresses = self._addresses
        for i in range(n):
            msg = self._msgs[i]
            length = msg.msg_len
            if msg.msg_hdr.msg_flags & _MSG_TRUNC:
                self.truncated += 1
            raw = bytes(names[i * _SOCKADDR : i * _SOCKADDR + msg.msg_hdr.msg_namelen])
            address = addresses.get(raw)
            if address is None:
                address = addresses[raw] = _sockaddr(raw)
                if len(addresses) > 65536:
                    addresses.clear()
            payloads.append(bytes(view[i * size : i * size + length]))
            senders.append(address)
        return payloads, senders


def _sockaddr(raw: bytes) -> tuple[str, int]:
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = struct.unpack_from(">H", raw, 2)[0]
    if family == socket.AF_INET6:
        if raw[8:20] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped: an IPv4 exporter on a dual-stack socket
            return socket.inet_ntop(socket.AF_INET, raw[20:24]), port
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
