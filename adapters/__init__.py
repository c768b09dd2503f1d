"""Adapters: how a member supplies a jar (ZODB now; SQL and LDAP to come)."""
