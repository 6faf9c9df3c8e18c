from __future__ import annotations

import functools

import factory
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from levy.accounts.models import User
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import Role, default_is_resident
from levy.wallets.models import Wallet

TEST_PASSWORD = "correct-horse-battery"


def password_hash() -> str:
    """Hash the test password once per hasher setting: the real hasher costs ~0.3 s a
    call. Keyed by PASSWORD_HASHERS, because a test that swaps in a fast hasher
    (the money state machine) must not leave a hash the default hashers cannot check
    to the tests after it (their sign-ins would fail)."""
    return _password_hash(tuple(settings.PASSWORD_HASHERS))


@functools.cache
def _password_hash(hashers: tuple[str, ...]) -> str:
    return make_password(TEST_PASSWORD)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.test")
    name = factory.Sequence(lambda n: f"Person {n}")
    password = factory.LazyFunction(lambda: password_hash())


class ClusterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cluster

    name = factory.Sequence(lambda n: f"Estate {n}")
    currency = "NGN"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    cluster = factory.SubFactory(ClusterFactory)
    role = Role.RESIDENT
    is_resident = factory.LazyAttribute(lambda m: default_is_resident(m.role))
    joined_at = factory.LazyFunction(lambda: timezone.now() - timezone.timedelta(days=30))

    @factory.post_generation
    def wallet(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            Wallet.objects.get_or_create(cluster=self.cluster, user=self.user)
