"""
Private pieces of L{proud_twisted.testing}'s in-memory network.

Import the public names from L{proud_twisted.testing}, not from here.
"""
