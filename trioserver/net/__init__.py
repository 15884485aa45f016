"""Listeners: plain HTTP, the post-quantum TLS front, and the loop that serves them."""
