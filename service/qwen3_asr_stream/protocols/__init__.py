"""Protocol adapters: each converts its messages to the session core and maps errors through one table."""
