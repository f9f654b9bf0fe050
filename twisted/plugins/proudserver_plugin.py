"""Makes C{twistd proudserver} available; see L{proud_twisted.tap}."""

from twisted.application.service import ServiceMaker

proudServer = ServiceMaker(
    "proudserver",
    "proud_twisted.tap",
    "A proud_twisted game server: server-owned P2P groups with relay "
    "(runs the built-in rooms app unless --events is given)",
    "proudserver",
)
