"""UR3 CobotOps: protective stops and grip losses of one UR3 arm, scored as events.

Data: UCI ML Repository 963 (Tyrovolas, Aliev, Antonelli, Stylios, 2024,
DOI 10.24432/C5J891, CC BY 4.0), read in place from `<data_dir>/ur3-cobotops`
(the CLI passes `Settings.data_dir`, FLEET_TWIN_DATA_DIR).
One arm at ~1 Hz, 7,409 rows; quirks handled here: a UTF-8 BOM, timestamps
sometimes wrapped in quotes, the column `cycle ` (trailing space), 54 rows
with every signal blank (skipped by the detector; a blank
`Robot_ProtectiveStop` counts as not stopped).

Scoring (the data README's): an episode is a contiguous run of True; it is
detected if an alert (the alarm opening) fires from 5 s before to 10 s after
its onset; delay = first such alert - onset. A false alarm is an alert outside
every episode's window (either type; alerting on the other kind of event is
not false) and the rate is per hour of observed time outside those windows.
`chance` is the recall of the same alerts shifted in time (circularly, by 30
fixed offsets): windows cover about 30 % of the time, so chance is far from 0.

Out-of-fold by contiguous time blocks, never by rows: the recording (two
sessions, 08:17-09:05 and 14:19-15:36, 5.2 h apart) is cut into `K` blocks of
consecutive rows (`twin.score.folds.contiguous_blocks`); for each block the
parameter grid (`GRID`) is searched, and the baselines fitted, on the other
blocks only (`restrict` hands the search a recording that holds no row of the
scored block), then the block is scored; the table pools the `K` held-out
blocks. `twin.score.folds.out_of_fold` refuses a fold that would leak.

Detectors, all `twin.detect.multivariate`:

* `joint, one baseline`: currents, speeds and tool current (13 signals)
  against one baseline of the clean cycles of block 1. The arm's normal
  motion covers so much of the space that this scores at chance level: shown
  so nobody has to try it again.
* `joint, per cycle phase`: the same 13 signals, one baseline per second of
  the work cycle (the controller's `cycle ` counter restarts it; a normal
  cycle takes 24-25 s), so a joint that stands still, or pulls a different
  current, where it normally moves is far from its phase's baseline. Phases
  past 24 s (an overrunning cycle) use the pooled baseline.
* `tool current, per cycle phase`: the same on the tool current alone, for
  grip loss.

Temperatures are left out: they climb ~10 C over the recording, beyond
anything block 1 saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from twin.detect.multivariate import Baseline, MultivariateParams, State, fit, step
from twin.score.folds import Fold, contiguous_blocks, out_of_fold

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

FILE = "ur3-cobotops/dataset_02052023.csv"
CURRENTS = tuple(f"Current_J{j}" for j in range(6))
SPEEDS = tuple(f"Speed_J{j}" for j in range(6))
TOOL = ("Tool_current",)
JOINT = CURRENTS + SPEEDS + TOOL
TEMPERATURES = ("Temperature_T0", *(f"Temperature_J{j}" for j in range(1, 6)))
"""`Temperature_T0` is J0's temperature (the data set's own spelling)."""
PHASES = 25
"""Seconds of a normal work cycle; later phases use the pooled baseline."""
SESSION_GAP_S = 3600.0
"""A gap longer than this starts a new block."""
PRE_S, POST_S = 5.0, 10.0
"""Detection window around each episode onset."""
MAX_STEP_S = 5.0
"""Row gaps longer than this are not counted as observed time."""

K = 4
"""Time blocks of the out-of-fold table: each held-out block has 18-38 protective stops."""
BUDGET = 20.0
"""The search keeps settings within this many false alarms per hour on the training blocks."""

JOINT_PARAMS = MultivariateParams(
    shrinkage=0.2, ridge=0.05, min_weight=5.0,
    threshold=6.0, release=0.5, cap=1e9, rise_s=1.0, fall_s=5.0,
)
"""The setting block 1 (the first session) chose; the out-of-fold table searches its own per fold."""
ONE_PARAMS = MultivariateParams(
    shrinkage=0.2, ridge=0.05, min_weight=5.0,
    threshold=2.0, release=0.3, cap=1e9, rise_s=1.0, fall_s=10.0,
)
"""The single-baseline detector's own best on block 1 (the same grid)."""
TOOL_PARAMS = MultivariateParams(
    shrinkage=0.2, ridge=0.05, min_weight=5.0,
    threshold=24.0, release=1.0, cap=1e9, rise_s=0.0, fall_s=0.0,
)
"""The setting block 1 chose for grip losses."""


@dataclass(frozen=True)
class Recording:
    """The whole CSV, in time order, with what the detectors and scorer need."""

    ts: Floats
    values: pl.DataFrame
    """The signal columns (`JOINT` and `TEMPERATURES`), float, null where blank."""
    stop: Bools
    grip: Bools
    phase: npt.NDArray[np.int64]
    """Whole seconds since the row that started this row's work cycle."""
    clean: Bools
    """Row belongs to a cycle of normal length with no labelled episode."""
    blocks: tuple[tuple[int, int], ...]
    """Row ranges [start, end) of the contiguous recording sessions."""
    cycle: Floats
    """The controller's work-cycle counter (`cycle `), as read."""

    def matrix(self, columns: tuple[str, ...]) -> Floats:
        return self.values.select(columns).to_numpy().astype(np.float64)


def read(root: Path) -> Recording:
    """Parse the CSV and derive the cycle phase, clean cycles and blocks."""
    raw = pl.read_csv(root / FILE, infer_schema_length=0, encoding="utf8-lossy")
    raw = raw.rename({c: c.lstrip("\ufeff").strip() for c in raw.columns})
    stamps = raw["Timestamp"].str.strip_chars('"').str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ")
    ts = stamps.dt.epoch("ms").to_numpy() / 1000.0
    values = raw.select([pl.col(c).cast(pl.Float64) for c in JOINT + TEMPERATURES])
    stop = (raw["Robot_ProtectiveStop"] == "TRUE").fill_null(False).to_numpy()
    grip = (raw["grip_lost"] == "TRUE").fill_null(False).to_numpy()
    cycle = raw["cycle"].cast(pl.Int64).to_numpy()
    phase, clean = _cycles(ts, cycle, stop | grip)
    return Recording(ts, values, stop, grip, phase, clean, _blocks(ts), cycle.astype(np.float64))


def _cycles(
    ts: Floats, cycle: npt.NDArray[np.int64], labelled: Bools
) -> tuple[npt.NDArray[np.int64], Bools]:
    starts = np.r_[True, np.diff(cycle) != 0]
    run = np.cumsum(starts) - 1
    start_ts = ts[starts][run]
    phase = np.floor(ts - start_ts + 0.5).astype(np.int64)
    length = np.bincount(run)[run]
    dirty = np.bincount(run, weights=labelled.astype(float))[run] > 0
    return phase, (length <= PHASES) & ~dirty


def _blocks(ts: Floats) -> tuple[tuple[int, int], ...]:
    cuts = [0, *(np.flatnonzero(np.diff(ts) > SESSION_GAP_S) + 1).tolist(), len(ts)]
    return tuple(zip(cuts[:-1], cuts[1:]))


# -- detectors -----------------------------------------------------------------


@dataclass(frozen=True)
class PhaseModel:
    """Per-phase baselines (or one shared) over z-scored signals."""

    columns: tuple[str, ...]
    centre: Floats
    scale: Floats
    phases: tuple[Baseline, ...]
    """Empty for a single-baseline model."""
    pooled: Baseline

    def baseline(self, phase: int) -> Baseline:
        return self.phases[phase] if 0 <= phase < len(self.phases) else self.pooled


def train(
    rec: Recording, columns: tuple[str, ...], block: tuple[int, int] | None, params: MultivariateParams,
    per_phase: bool = True,
) -> PhaseModel:
    """Fit on the clean, complete rows of one block (None: of the whole recording given)."""
    data = rec.matrix(columns)
    rows = np.zeros(len(rec.ts), dtype=bool)
    lo, hi = block or (0, len(rec.ts))
    rows[lo:hi] = True
    rows &= rec.clean & np.isfinite(data).all(axis=1)
    centre, scale = data[rows].mean(axis=0), data[rows].std(axis=0)
    z = (data - centre) / scale
    phases = (
        tuple(fit(z[rows & (rec.phase == p)], params) for p in range(PHASES)) if per_phase else ()
    )
    return PhaseModel(columns, centre, scale, phases, fit(z[rows], params))


def scores(rec: Recording, model: PhaseModel, block: tuple[int, int], params: MultivariateParams) -> Floats:
    """Stream one block through `step`, in time order; normalised score per row."""
    z = (rec.matrix(model.columns) - model.centre) / model.scale
    state: State | None = None
    out = np.zeros(block[1] - block[0])
    for i in range(*block):
        base = model.baseline(int(rec.phase[i]))
        state, out[i - block[0]] = step(state, base, z[i], float(rec.ts[i]), params)
    return out


def alerts(rec: Recording, score: Floats, block: tuple[int, int]) -> Floats:
    """Times at which the alarm opens (score crosses 1 from below)."""
    on = score >= 1.0
    rising = on & ~np.r_[False, on[:-1]]
    times: Floats = rec.ts[block[0]:block[1]][rising]
    return times


# -- event scoring ---------------------------------------------------------------


def true_runs(flags: Bools) -> list[tuple[int, int]]:
    """Contiguous runs of True as [start, end) row ranges."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


@dataclass(frozen=True)
class EventScore:
    episodes: int
    detected: int
    false_alarms: int
    hours: float
    """Observed time outside every episode window."""
    delays: tuple[float, ...]
    chance: float

    @property
    def recall(self) -> float:
        return self.detected / self.episodes if self.episodes else float("nan")

    @property
    def per_hour(self) -> float:
        return self.false_alarms / self.hours

    @property
    def median_delay(self) -> float:
        return float(np.median(self.delays)) if self.delays else float("nan")


def _windows(rec: Recording, eps: list[tuple[int, int]]) -> list[tuple[float, float]]:
    return [(rec.ts[a] - PRE_S, max(rec.ts[a] + POST_S, rec.ts[b - 1])) for a, b in eps]


def _inside(times: Floats, windows: list[tuple[float, float]]) -> Bools:
    hit = np.zeros(len(times), dtype=bool)
    for lo, hi in windows:
        hit |= (times >= lo) & (times <= hi)
    return hit


def _detections(rec: Recording, fired: Floats, eps: list[tuple[int, int]]) -> list[float]:
    delays = []
    for a, _ in eps:
        near = fired[(fired >= rec.ts[a] - PRE_S) & (fired <= rec.ts[a] + POST_S)]
        if len(near):
            delays.append(float(near.min() - rec.ts[a]))
    return delays


def score_events(
    rec: Recording, fired: Floats, target: Bools, block: tuple[int, int]
) -> EventScore:
    """Recall, false alarms and delays of alerts `fired` for one event type in one block."""
    lo, hi = block
    eps = [(a, b) for a, b in true_runs(target) if lo <= a < hi]
    every = _windows(rec, true_runs(rec.stop) + true_runs(rec.grip))
    delays = _detections(rec, fired, eps)
    ts = rec.ts[lo:hi]
    steps = np.diff(ts)
    outside = (steps <= MAX_STEP_S) & ~_inside(ts[:-1], every)
    return EventScore(
        episodes=len(eps),
        detected=len(delays),
        false_alarms=int((~_inside(fired, every)).sum()),
        hours=float(steps[outside].sum()) / 3600.0,
        delays=tuple(delays),
        chance=_chance(rec, fired, eps, ts[0], ts[-1]),
    )


def _chance(
    rec: Recording, fired: Floats, eps: list[tuple[int, int]], start: float, end: float
) -> float:
    """Mean recall of the same alerts circularly shifted by 30 fixed offsets."""
    if not eps:
        return float("nan")
    span = end - start
    recalls = []
    for k in range(1, 31):
        shifted = start + np.mod(fired - start + span * k / 31.0, span)
        recalls.append(len(_detections(rec, np.sort(shifted), eps)) / len(eps))
    return float(np.mean(recalls))


# -- the table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Detector:
    name: str
    columns: tuple[str, ...]
    params: MultivariateParams
    per_phase: bool


DETECTORS = (
    Detector("joint, one baseline", JOINT, ONE_PARAMS, per_phase=False),
    Detector("joint, per cycle phase", JOINT, JOINT_PARAMS, per_phase=True),
    Detector("tool current, per cycle phase", TOOL, TOOL_PARAMS, per_phase=True),
)


def run(rec: Recording, det: Detector, block: tuple[int, int]) -> Floats:
    """Alert times of one detector on one block, trained on block 1 (the first session)."""
    model = train(rec, det.columns, rec.blocks[0], det.params, det.per_phase)
    return alerts(rec, scores(rec, model, block, det.params), block)


# -- out-of-fold by time blocks --------------------------------------------------------


def restrict(rec: Recording, blocks: tuple[tuple[int, int], ...]) -> Recording:
    """The recording cut down to the rows of `blocks` (each its own block): what a search may see."""
    keep = np.zeros(len(rec.ts), dtype=bool)
    for lo, hi in blocks:
        keep[lo:hi] = True
    lengths = [hi - lo for lo, hi in blocks]
    edges = np.r_[0, np.cumsum(lengths)].tolist()
    return Recording(rec.ts[keep], rec.values.filter(pl.Series(keep)), rec.stop[keep], rec.grip[keep],
                     rec.phase[keep], rec.clean[keep], tuple(zip(edges[:-1], edges[1:])), rec.cycle[keep])


GRID = tuple(
    MultivariateParams(shrinkage=0.2, ridge=0.05, min_weight=5.0, cap=1e9, rise_s=rise, fall_s=fall,
                       release=release, threshold=threshold)
    for rise, fall, release in ((0.0, 0.0, 1.0), (1.0, 5.0, 0.5), (1.0, 10.0, 0.3), (2.0, 10.0, 0.5))
    for threshold in (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
)
"""The settings a search tries (the grid the block-1 parameters came from)."""


def search(seen: Recording, det: Detector, event: str, budget: float = BUDGET,
           grid: tuple[MultivariateParams, ...] = GRID) -> list[tuple[float, float, MultivariateParams]]:
    """(recall, false alarms/h, params) of every setting within `budget` on `seen`, best first
    (none within it: the one with the fewest false alarms).

    Baselines are fitted on all clean rows of `seen`, each of its blocks is
    streamed on its own, and the counts are pooled over its blocks.
    """
    target = seen.stop if event == "stop" else seen.grip
    found = []
    for params in grid:
        model = train(seen, det.columns, None, params, det.per_phase)
        parts = [score_events(seen, alerts(seen, scores(seen, model, b, params), b), target, b) for b in seen.blocks]
        s = pooled(parts)
        found.append((s.recall, s.per_hour, params))
    within = [f for f in found if f[1] <= budget]
    # Nothing within budget: the setting that came closest (fewest false alarms), not a guess.
    return sorted(within, key=lambda r: (-r[0], r[1])) if within else [min(found, key=lambda r: (r[1], -r[0]))]


def pooled(parts: list[EventScore]) -> EventScore:
    """Several blocks' scores as one (chance weighted by episodes)."""
    episodes = sum(p.episodes for p in parts)
    chance = sum(p.chance * p.episodes for p in parts if p.episodes) / episodes if episodes else float("nan")
    return EventScore(episodes, sum(p.detected for p in parts), sum(p.false_alarms for p in parts),
                      sum(p.hours for p in parts), tuple(d for p in parts for d in p.delays), chance)


Block = tuple[int, int]


def block_folds(rec: Recording, k: int = K) -> list[Fold[Block]]:
    """One fold per contiguous block of rows: searched on the other `k - 1`, scored on it."""
    blocks = contiguous_blocks(len(rec.ts), k)
    return [Fold(f"block {i + 1}/{k}", tuple(b for b in blocks if b != held), (held,))
            for i, held in enumerate(blocks)]


@dataclass(frozen=True)
class Choice:
    """What a fold's search chose: the setting, and the baseline fitted on the training rows."""

    params: MultivariateParams
    model: PhaseModel


def oof(rec: Recording, det: Detector, event: str, k: int = K, budget: float = BUDGET,
        searcher: Callable[[Recording, Detector, str, float], list[tuple[float, float, MultivariateParams]]] = search,
        ) -> tuple[EventScore, list[MultivariateParams]]:
    """Out-of-fold score of one detector on one event type, pooled over `k` held-out blocks,
    and the setting each fold chose. `searcher` only ever receives `restrict(rec, training blocks)`."""
    target = rec.stop if event == "stop" else rec.grip

    def choose(train_blocks: Sequence[Block]) -> Choice:
        seen = restrict(rec, tuple(train_blocks))
        found = searcher(seen, det, event, budget)
        params = found[0][2]
        return Choice(params, train(seen, det.columns, None, params, det.per_phase))

    def held_out(choice: Choice, test: Sequence[Block]) -> EventScore:
        return pooled([score_events(rec, alerts(rec, scores(rec, choice.model, b, choice.params), b), target, b)
                       for b in test])

    results = out_of_fold(block_folds(rec, k), choose, held_out, key=lambda b: b)
    return pooled([r.result for r in results]), [r.params.params for r in results]


def ur3_table(data_dir: Path, k: int = K, budget: float = BUDGET) -> pl.DataFrame:
    """Per detector and event type, out-of-fold over `k` time blocks: recall (and chance),
    false alarms/h, median delay, and the thresholds the folds chose."""
    rec = read(data_dir)
    rows = []
    for det in DETECTORS:
        for event, label in (("stop", "protective stop"), ("grip", "grip lost")):
            s, chosen = oof(rec, det, event, k, budget)
            rows.append((
                det.name, label, f"out-of-fold, {k} blocks", s.episodes, round(s.recall, 3),
                round(s.chance, 3), round(s.per_hour, 1), round(s.median_delay, 1), round(s.hours, 2),
                "/".join(f"{p.threshold:g}" for p in chosen),
            ))
    return pl.DataFrame(rows, orient="row", schema=[
        "detector", "event", "block", "episodes", "recall", "chance_recall",
        "false_alarms_per_h", "median_delay_s", "hours_outside", "thresholds",
    ])


def tune(
    data_dir: Path, columns: tuple[str, ...], event: str, budget: float = BUDGET,
    per_phase: bool = True,
) -> list[tuple[float, float, MultivariateParams]]:
    """The grid on block 1 (the first session) alone: where `JOINT_PARAMS` and `TOOL_PARAMS` came from."""
    rec = read(data_dir)
    return search(restrict(rec, (rec.blocks[0],)), Detector("tune", columns, JOINT_PARAMS, per_phase), event, budget)
