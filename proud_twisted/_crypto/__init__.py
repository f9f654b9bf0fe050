"""Private implementation of L{proud_twisted.crypto}; import from there."""
