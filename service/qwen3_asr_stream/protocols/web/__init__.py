"""The live captions page (static files served by server/http.py at /)."""
