"""Customer accounts: creating and finding them, what a username and a password must be,
hashing, signing in (temporary passwords too), changing a password, the sign-in throttle,
and importing accounts from an older system."""
