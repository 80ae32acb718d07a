"""iSpring REST: changing users (profile, status, schedules, password, groups, leave)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
