"""Digit Lab's browser dashboard (Streamlit). Layout only: the work happens in ``core``."""
