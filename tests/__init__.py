"""Fast tests of bridge/, chaos/, environment/ and reports/, and the can-fail tests of the scenarios."""
