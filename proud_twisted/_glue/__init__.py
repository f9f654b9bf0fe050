"""Twisted glue (private): what runs the pure cores on a reactor.

Drivers that feed cores time and datagrams, the end-of-turn flush, UDP
writes and socket buffers, event dispatch and once-only logging. Nothing
here decides protocol behaviour; the cores and the facades do.
"""
