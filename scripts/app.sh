#!/usr/bin/env bash
# Set up (first run only) and start the dashboard: bash scripts/app.sh [streamlit options]
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/python -m streamlit run dashboard/app.py "$@"
