"""The attack suite's world (servers, a repository, a destination), shared by its modules."""

from tests.attack.test_hostile_remote import pics, world  # noqa: F401
