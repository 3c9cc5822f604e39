#!/bin/sh
# Creates .venv with the pinned OpenAI, Anthropic and google-genai SDKs and pytest
# (tests/python/requirements.txt).
# Idempotent: does nothing when the venv already has them.
set -eu
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/python ] && .venv/bin/python -c "import openai, anthropic, pytest, google.genai" 2>/dev/null; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
