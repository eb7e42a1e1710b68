"""Scoring detectors against labelled data (NAB, SKAB, UR3 CobotOps, simulator ground truth)."""
