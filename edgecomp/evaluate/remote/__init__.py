"""A board on the network as the target device: the deployed file timed, and where its numerics may differ scored, on
the board over SSH (`device=remote`; docs/measuring_on_boards.md)."""
