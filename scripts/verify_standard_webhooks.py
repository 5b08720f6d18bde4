#!/usr/bin/env python3
"""Verifies webhook requests with the Standard Webhooks reference library (PyPI:
standardwebhooks), an implementation independent of hearback's.

Reads JSON lines on stdin, each {"secret": "whsec_...", "headers": {...}, "body": "..."}; prints
how many were verified; exits 1 at the first request whose signature does not verify.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

verified = 0
for number, line in enumerate(sys.stdin, start=1):
    if not line.strip():
        continue
    request = json.loads(line)
    try:
        Webhook(request["secret"]).verify(request["body"], request["headers"])
    except Exception as error:  # the library raises its own verification errors
        print(f"request {number}: {error}", file=sys.stderr)
        sys.exit(1)
    verified += 1
print(verified)
