"""The local web app and JSON API (`pictext serve`)."""
