"""Scheduled jobs, declared as data and run by APScheduler."""
