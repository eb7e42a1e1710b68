"""Offline evaluation of the detectors on public data sets and simulator scenarios."""
