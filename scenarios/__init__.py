"""The DR claims, as tests; engines in the *_support modules."""
