"""
NAT boxes of the memory network: RFC 3489 mapping and filtering rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from random import Random
from typing import TYPE_CHECKING

from twisted.logger import Logger

from .conditions import NATType

if TYPE_CHECKING:
    from .host import HostReactor
    from .network import MemoryNetwork

Address = tuple[str, int]

_FIRST_CONE_PORT = 40000
_LOWEST_PORT = 1024
_PORT_COUNT = 65536 - _LOWEST_PORT


@dataclass
class NATMapping:
    """
    One UDP translation: C{inside} is seen outside as the NAT's public
    address and C{publicPort}.  C{destination} is set for symmetric NATs.
    """

    inside: Address
    publicPort: int
    destination: Address | None
    lastUsed: float
    contacted: set[Address] = field(default_factory=set)
    contactedIPs: set[str] = field(default_factory=set)


class NATBox:
    """
    A NAT router with one public address and a LAN of hosts behind it.

    Create with L{MemoryNetwork.addNAT}; add hosts with L{addHost}.  UDP
    mappings expire C{mappingTimeout} seconds after their last outbound use
    (C{None}: never).  There is no hairpinning and no port forwarding: TCP
    can only go out.
    """

    log = Logger()

    def __init__(
        self,
        network: MemoryNetwork,
        ip: str,
        natType: NATType,
        mappingTimeout: float | None,
        rng: Random,
    ) -> None:
        self.network = network
        self.ip = ip
        self.natType = natType
        self.mappingTimeout = mappingTimeout
        self.hosts: dict[str, HostReactor] = {}
        self._rng = rng
        self._udpOut: dict[tuple, NATMapping] = {}
        self._udpIn: dict[int, NATMapping] = {}
        self._tcpIn: dict[int, Address] = {}
        self._nextPort = {"udp": _FIRST_CONE_PORT, "tcp": _FIRST_CONE_PORT}

    def __repr__(self) -> str:
        return f"<NATBox {self.ip} {self.natType.name}>"

    def addHost(self, lanIP: str) -> HostReactor:
        """
        Add a host with LAN address C{lanIP} behind this NAT.
        """
        return self.network._addHost(lanIP, self)

    def udpMappings(self) -> list[NATMapping]:
        """
        The UDP mappings now held, oldest first (expired ones included until
        next touched).
        """
        return list(self._udpIn.values())

    def _allocate(self, kind: str) -> int:
        used = self._udpIn if kind == "udp" else self._tcpIn
        if len(used) >= _PORT_COUNT:
            raise RuntimeError(f"{self!r} has no free {kind} port")
        if self.natType is NATType.SYMMETRIC:
            while True:
                port = self._rng.randrange(_LOWEST_PORT, 65536)
                if port not in used:
                    return port
        port = self._nextPort[kind]
        while port in used:
            port = port + 1 if port < 65535 else _LOWEST_PORT
        self._nextPort[kind] = port + 1 if port < 65535 else _LOWEST_PORT
        return port

    def _expired(self, mapping: NATMapping, now: float) -> bool:
        return (
            self.mappingTimeout is not None
            and now - mapping.lastUsed > self.mappingTimeout
        )

    def _forget(self, key: tuple, mapping: NATMapping) -> None:
        self.log.debug(
            "{nat} mapping {inside} -> {port} expired",
            nat=self,
            inside=mapping.inside,
            port=mapping.publicPort,
        )
        self._udpOut.pop(key, None)
        self._udpIn.pop(mapping.publicPort, None)

    def _outboundUDP(self, inside: Address, destination: Address, now: float) -> int:
        """
        Translate an outgoing datagram; return its public source port.
        """
        symmetric = self.natType is NATType.SYMMETRIC
        key = (inside, destination) if symmetric else (inside,)
        mapping = self._udpOut.get(key)
        if mapping is not None and self._expired(mapping, now):
            self._forget(key, mapping)
            mapping = None
        if mapping is None:
            mapping = NATMapping(
                inside,
                self._allocate("udp"),
                destination if symmetric else None,
                now,
            )
            self._udpOut[key] = mapping
            self._udpIn[mapping.publicPort] = mapping
            self.log.debug(
                "{nat} maps {inside} -> {port}",
                nat=self,
                inside=inside,
                port=mapping.publicPort,
            )
        mapping.lastUsed = now
        mapping.contacted.add(destination)
        mapping.contactedIPs.add(destination[0])
        return mapping.publicPort

    def _inboundUDP(
        self, source: Address, publicPort: int, now: float
    ) -> Address | None:
        """
        Translate an arriving datagram; C{None} if the NAT filters it.
        """
        mapping = self._udpIn.get(publicPort)
        if mapping is None:
            return None
        if self._expired(mapping, now):
            key = (mapping.inside, mapping.destination)
            self._forget(key if mapping.destination else key[:1], mapping)
            return None
        natType = self.natType
        if natType is NATType.FULL_CONE:
            allowed = True
        elif natType is NATType.ADDRESS_RESTRICTED:
            allowed = source[0] in mapping.contactedIPs
        elif natType is NATType.PORT_RESTRICTED:
            allowed = source in mapping.contacted
        else:
            allowed = source == mapping.destination
        return mapping.inside if allowed else None

    def _peekUDP(self, publicPort: int) -> HostReactor | None:
        mapping = self._udpIn.get(publicPort)
        return None if mapping is None else self.hosts.get(mapping.inside[0])

    def _openTCP(self, inside: Address) -> int:
        port = self._allocate("tcp")
        self._tcpIn[port] = inside
        return port

    def _closeTCP(self, publicPort: int) -> None:
        self._tcpIn.pop(publicPort, None)
