"""Files of users: reading CSV and XLSX as rows of named columns (files.py), for the import
(plan and apply live in the core)."""
