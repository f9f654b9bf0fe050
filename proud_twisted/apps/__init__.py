"""Applications built on proud_twisted; the core package never imports them."""
