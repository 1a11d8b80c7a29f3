"""The supervisor's web dashboard: programs, logs, actions, charts, behind a login.

The package knows nothing of sockets or of the supervisor's classes (observe/ sits below http/ and supervisor/
in the layers): `app.py` turns a whole Request into a Response against an `Operations` object, and the
supervisor's listener (`supervisor/dashboard.py`) reads requests with http/'s parser and hands them in.
"""
