"""The Neon Bar session server: rooms, auth, tick loop, snapshots, reliable events, storage."""
