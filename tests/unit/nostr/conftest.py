"""Run the SDK as the daemon does: with the string-passing speed-up applied."""

from p2p_comm import sdk_speedups

# Without it a 10 MB string takes seconds just to reach the SDK (NIP-44 length vectors).
sdk_speedups.apply()
