"""Neon Bar: what the server and the client share.

Everything in this package is engine-independent (no Panda3D, no sockets): the wire protocol
and its codec, the bar layout and collision, snapshots, the playback clock and the beat model.
"""

__version__ = "0.1.0"
