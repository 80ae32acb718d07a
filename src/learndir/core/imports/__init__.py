"""Importing a file of users: its columns (columns.py); the plan and its application follow."""
