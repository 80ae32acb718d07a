"""Invitations: the set-password tokens carried by invitation messages (rows of `outbox`)."""
