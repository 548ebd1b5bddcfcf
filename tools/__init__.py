"""Build helpers (`make install` runs them); nothing in the product imports them."""
