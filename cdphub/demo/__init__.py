"""Realistic demo data across the four apps, written with COPY so 100k profiles take seconds."""
