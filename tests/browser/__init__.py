"""Real-browser tests: Chromium, the SuperTokens frontend SDK and the demo page (see docs/browser-tests.md)."""
