"""Spark ML's binomial ``LogisticRegression`` fit, replayed in NumPy (the tune job's grid).

Why: cross-validating the default grid (16 points x 3 folds) on tuning-sized data costs a Spark
job per L-BFGS step of every fit, each far more scheduling, closure cleaning and task
serialization than arithmetic. The same fits in one process (the tune job runs them in one
Spark task) take a fraction of the time (docs/performance.md). What
cross-validation needs from each fit is only its predictions on the held-out fold, so the fit
must be *Spark's*, step for step, not merely a good optimum: the grid holds ``maxIter=15``,
an unconverged fit whose model depends on the optimizer's path.

What is replayed (Spark 4 ``LogisticRegression.train``/``trainImpl``, breeze 2.1):
- the objective: features scaled by their sample standard deviation and virtually centred
  (``fitWithMean``), mean log-loss, ``0.5 * regParam * (1 - elasticNetParam) * |w|^2`` on the
  scaled coefficients, no penalty on the intercept; the start: zeros, intercept ``log(n1/n0)``;
- the optimizer: ``LBFGS(maxIter, m=10, tol)`` with ``StrongWolfeLineSearch(10, 10)`` when there
  is no L1 part, else ``OWLQN`` with its ``BacktrackingLineSearch`` and orthant projection;
  breeze's convergence checks (max iterations; function values over a 20-value window;
  gradient norm), its reset of the history after a failed step and its stop after a second.

Only the order of floating-point sums differs from Spark's, so models agree to ~1e-12, not to
the bit: ``tests/spark/test_local_lr.py`` compares objective histories and coefficients with
Spark's, on synthetic cases of each kind and on the real 60 images' features for every point of
the default grid, and the tune job re-checks the chosen point against Spark's own refit on every
run.

Scope: the defaults the tune job uses (binomial, ``standardization``, ``fitIntercept``, no
weights, no bounds, ``tol=1e-6``). Anything else is not handled here (``supports``). Fenced to
the pyspark versions it was checked against (``REPLAYED_PYSPARK``): on any other, ``choose``
declines and the tune job runs ``CrossValidator``.

Two parts in one file, on purpose: the replay (NumPy, above the marked line) and the tune job's
interface to it (``choose``, below), so that removing the replay is deleting this file and one
call in ``tune.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from spark_tasks.classification import Choice

TOL = 1e-6  # LogisticRegression's default tol
HISTORY = 10  # Spark passes m=10 to breeze's LBFGS and OWLQN
FVAL_MEMORY = 20  # breeze's defaultConvergenceCheck

Vector = np.ndarray
DiffFunction = Callable[[Vector], tuple[float, Vector]]


class FirstOrderError(Exception):
    """breeze's ``FirstOrderException``: the step failed (line search, NaN history, underflow)."""


@dataclass(frozen=True)
class Fit:
    """A fitted model in the original feature space, as ``LogisticRegressionModel`` holds it."""

    coefficients: Vector
    intercept: float
    objective_history: list[float]

    def margins(self, features: Vector) -> Vector:
        return features @ self.coefficients + self.intercept

    def predict(self, features: Vector) -> Vector:
        """``LogisticRegressionModel.transform``'s prediction at the default threshold 0.5:
        ``raw2prediction``, label 1 when the margin is above 0."""
        return (self.margins(features) > 0.0).astype(np.float64)

    def closeness(self, features: Vector) -> float:
        """How near the closest of these rows is to the decision boundary: min |margin| over
        the size of the terms summed into it (|x|.|w| + |b|). Engines whose models differ by
        ~1e-11 relative can only disagree on a prediction where this is that small."""
        scale = np.abs(features) @ np.abs(self.coefficients) + abs(self.intercept)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(self.margins(features)) / scale
        # every term 0 (0/0): the row sits on the boundary, whatever the engine
        ratio[scale == 0] = 0.0
        return float(np.nanmin(ratio, initial=np.inf))


def supports(labels: Vector, folds: Vector, num_folds: int) -> bool:
    """Whether every cross-validation fit is one this module replays: two classes (0 and 1)
    present in every fold's training part, every row in a fold of ``range(num_folds)`` and no
    fold empty (``CrossValidator`` raises on those; it is left to say so). Spark answers a
    one-class training set with an infinite intercept and no fit; multinomial fits are another
    optimizer problem."""
    if not set(np.unique(labels)) <= {0.0, 1.0}:
        return False
    if set(np.unique(folds)) != set(range(num_folds)):
        return False
    for k in range(num_folds):
        train = labels[folds != k]
        if train.size == 0 or train.min() == train.max():
            return False
    return True


def _log1p_exp(x: Vector) -> Vector:
    """Spark's ``Utils.log1pExp``: log(1 + exp(x)) without overflow."""
    out = np.empty_like(x)
    pos = x > 0
    out[pos] = x[pos] + np.log1p(np.exp(-x[pos]))
    out[~pos] = np.log1p(np.exp(x[~pos]))
    return out


def _scaling(features: Vector) -> tuple[Vector, Vector]:
    """``Summarizer``'s mean and sample standard deviation; a constant column has std exactly
    0 (Spark's online update never moves off a constant), and is then ignored as Spark does."""
    n = features.shape[0]
    mean = features.mean(axis=0)
    std = features.std(axis=0, ddof=1) if n > 1 else np.zeros(features.shape[1])
    std[np.ptp(features, axis=0) == 0] = 0.0
    return mean, std


class Problem:
    """One training set, scaled once (``Summarizer`` + ``StandardScaler`` in ``trainImpl``):
    fits of any grid point on it share the scaled copy."""

    def __init__(self, features: Vector, labels: Vector):
        features = np.asarray(features, dtype=np.float64)  # only its scaled copy is kept
        self.labels = np.asarray(labels, dtype=np.float64)
        self.n, self.d = features.shape
        positives = float(self.labels.sum())
        if not 0 < positives < self.n:
            raise ValueError("both classes are needed: Spark does not fit a one-class set")
        self.log_odds = math.log(positives / (self.n - positives))
        mean, self.std = _scaling(features)
        inverse_std = np.divide(1.0, self.std, out=np.zeros_like(self.std), where=self.std != 0)
        self.scaled = features * inverse_std
        self.scaled_mean = inverse_std * mean
        self.positive = self.labels > 0

    def objective(self, reg_l2: float) -> DiffFunction:
        """``RDDLossFunction`` over ``BinaryLogisticBlockAggregator`` with ``fitWithMean``, plus
        ``L2Regularization`` (standardization on): value and gradient in the scaled space."""
        n, d, scaled, scaled_mean = self.n, self.d, self.scaled, self.scaled_mean
        labels, positive = self.labels, self.positive
        last: list = [None, 0.0, None]

        def calculate(w: Vector) -> tuple[float, Vector]:
            key = w.tobytes()
            if last[0] == key:  # breeze's CachedDiffFunction
                return last[1], last[2]
            coef = w[:d]
            margin = scaled @ coef + (w[d] - coef @ scaled_mean)
            with np.errstate(over="ignore"):
                loss = _log1p_exp(-margin)
                loss[~positive] += margin[~positive]
                multiplier = 1.0 / (1.0 + np.exp(-margin)) - labels
            multiplier_sum = multiplier.sum()
            grad = np.empty(d + 1)
            grad[:d] = scaled.T @ multiplier - multiplier_sum * scaled_mean
            grad[d] = multiplier_sum
            grad *= 1.0 / n  # as Spark scales it
            value = loss.sum() / n
            if reg_l2 != 0.0:
                value += 0.5 * float(coef @ coef) * reg_l2
                grad[:d] += reg_l2 * coef
            last[:] = [key, float(value), grad]
            return float(value), grad

        return calculate

    def fit(self, reg_param: float, elastic_net_param: float, max_iter: int, tol: float = TOL):
        """``LogisticRegression(regParam, elasticNetParam, maxIter, tol).fit`` on this set."""
        d = self.d
        reg_l2 = (1.0 - elastic_net_param) * reg_param
        reg_l1 = elastic_net_param * reg_param
        x0 = np.zeros(d + 1)
        x0[d] = self.log_odds
        x0[d] += x0[:d] @ self.scaled_mean  # fitWithMean: the start in the centred problem
        l1 = None
        if elastic_net_param != 0.0 and reg_param != 0.0:
            l1 = np.full(d + 1, reg_l1)
            l1[d] = 0.0  # no L1 on the intercept
        states = _Minimizer(self.objective(reg_l2), max_iter, tol, l1).iterations(x0)
        w = states[-1].x
        intercept = float(w[d] - w[:d] @ self.scaled_mean)
        coefficients = np.divide(w[:d], self.std, out=np.zeros(d), where=self.std != 0)
        return Fit(coefficients, intercept, [s.adj_value for s in states])


@dataclass(frozen=True)
class _State:
    x: Vector
    value: float
    grad: Vector
    adj_value: float
    adj_grad: Vector
    iter: int
    initial_adj_value: float
    history: tuple[tuple[Vector, Vector], ...] = ()  # (step, gradient delta), newest first
    fvals: tuple[float, ...] = (math.inf,)  # FunctionValuesConverged's window
    search_failed: bool = False


@dataclass
class _Minimizer:
    """breeze's ``LBFGS`` (``l1 is None``) or ``OWLQN`` (per-coordinate L1 weights)."""

    f: DiffFunction
    max_iter: int
    tol: float
    l1: Vector | None = None
    m: int = HISTORY

    def adjust(self, x: Vector, grad: Vector, value: float) -> tuple[float, Vector]:
        if self.l1 is None:
            return value, grad
        on = self.l1 != 0.0
        # breeze adds |l1_i * x_i| to the value one coordinate at a time, in order
        adj_value = float(np.cumsum(np.concatenate(([value], np.abs(self.l1[on] * x[on]))))[-1])
        adj = grad.copy()
        moving = on & (x != 0.0)
        adj[moving] = grad[moving] + np.sign(x[moving]) * self.l1[moving]
        at_zero = on & (x == 0.0)
        plus, minus = grad + self.l1, grad - self.l1
        adj[at_zero] = np.where(minus > 0, minus, np.where(plus < 0, plus, 0.0))[at_zero]
        return adj_value, adj

    def inverse_hessian_times(self, history, grad: Vector) -> Vector:
        """``LBFGS.ApproximateInverseHessian * grad`` (the two-loop recursion), negated."""
        if history:
            step, delta = history[0]
            sy, yy = step @ delta, delta @ delta
            if sy < 0 or math.isnan(sy):
                raise FirstOrderError("NaN history")
            diag = sy / yy
        else:
            diag = 1.0
        direction = grad.copy()
        alphas, rhos = [], []
        for step, delta in history:
            rho = step @ delta
            alpha = (step @ direction) / rho
            if math.isnan(alpha):
                raise FirstOrderError("NaN history")
            direction -= alpha * delta
            alphas.append(alpha)
            rhos.append(rho)
        direction *= diag
        for i in range(len(history) - 1, -1, -1):
            step, delta = history[i]
            beta = (delta @ direction) / rhos[i]
            direction += (alphas[i] - beta) * step
        return -direction

    def direction(self, state: _State) -> Vector:
        if self.l1 is None:
            return self.inverse_hessian_times(state.history, state.grad)
        d = self.inverse_hessian_times(state.history, state.adj_grad)
        return np.where(d * state.adj_grad < 0, d, 0.0)

    def take_step(self, state: _State, direction: Vector, size: float) -> Vector:
        if self.l1 is None:
            return direction * size + state.x
        stepped = state.x + direction * size
        orthant = np.where(state.x != 0, np.sign(state.x), np.sign(-state.adj_grad))
        # v * I(signum(v) == signum(ov)), as breeze: a NaN step stays NaN
        return stepped * (np.sign(stepped) == orthant)

    def step_size(self, state: _State, direction: Vector) -> float:
        def along(alpha: float) -> tuple[float, float]:
            x = self.take_step(state, direction, alpha)
            value, grad = self.f(x)
            value, grad = self.adjust(x, grad, value)
            return value, float(grad @ direction)

        if self.l1 is None:
            first = 1.0 / np.linalg.norm(direction) if state.iter == 0 else 1.0
            alpha = strong_wolfe(along, float(first))
            if alpha * np.linalg.norm(state.grad) < 1e-10:
                raise FirstOrderError("step size underflow")
            return alpha
        first = 0.5 / np.linalg.norm(state.grad) if state.iter < 1 else 1.0
        shrink = 0.1 if state.iter < 1 else 0.5
        return backtracking(along, float(first), state.value, shrink)

    def converged(self, s: _State) -> bool:
        if 0 <= self.max_iter <= s.iter:
            return True
        if len(s.fvals) >= 2 and abs(s.adj_value - np.max(s.fvals)) <= self.tol * abs(
            s.initial_adj_value
        ):
            return True
        if np.linalg.norm(s.adj_grad) <= max(self.tol * abs(s.adj_value), 1e-8):
            return True
        return s.search_failed

    def iterations(self, x0: Vector) -> list[_State]:
        """Every state breeze's ``iterations`` yields (Spark records each one's value)."""
        value, grad = self.f(x0)
        adj_value, adj_grad = self.adjust(x0, grad, value)
        state = _State(x0, value, grad, adj_value, adj_grad, 0, adj_value)
        states = [state]
        failed_once = False
        while not self.converged(state):
            try:
                direction = self.direction(state)
                size = self.step_size(state, direction)
                x = self.take_step(state, direction, size)
                value, grad = self.f(x)
                adj_value, adj_grad = self.adjust(x, grad, value)
                history = ((x - state.x, grad - state.grad), *state.history)[: self.m]
                fvals = (*state.fvals, adj_value)[-FVAL_MEMORY:]
                state = _State(
                    x, value, grad, adj_value, adj_grad, state.iter + 1,
                    state.initial_adj_value, history, fvals,
                )  # fmt: skip
                failed_once = False
            except FirstOrderError:
                if not failed_once:
                    failed_once = True
                    state = replace(state, history=())
                else:
                    state = replace(state, search_failed=True)
            states.append(state)
        return states


@dataclass(frozen=True)
class _Bracket:
    t: float
    dd: float
    fval: float


def _interp(low: _Bracket, high: _Bracket) -> float:
    """``CubicLineSearch.interp``, safeguarded to the middle 80 % (IEEE on NaN/inf, as Scala)."""
    with np.errstate(all="ignore"):
        rise = 3 * (np.float64(low.fval) - high.fval)  # Scala's order: (3 * df) / dt
        d1 = low.dd + high.dd - rise / (np.float64(low.t) - high.t)
        d2 = np.sqrt(np.float64(d1 * d1 - low.dd * high.dd))
        width = high.t - low.t
        t = high.t - width * (high.dd + d2 - d1) / np.float64(high.dd - low.dd + 2 * d2)
    lower, upper = low.t + 0.1 * (high.t - low.t), low.t + 0.9 * (high.t - low.t)
    return float(lower if t < lower else upper if t > upper else t)


def strong_wolfe(along: Callable[[float], tuple[float, float]], t: float) -> float:
    """breeze's ``StrongWolfeLineSearch(maxZoomIter=10, maxLineSearchIter=10).minimize``."""
    c1, c2 = 1e-4, 0.9
    if not t <= math.inf:  # breeze's require(init <= bound): not a failed step, an error
        raise ValueError(f"line search started at {t}")

    def phi(t: float) -> _Bracket:
        value, deriv = along(t)
        return _Bracket(t, deriv, value)

    low = phi(0.0)
    fval, dd = low.fval, low.dd
    if dd > 0:
        raise FirstOrderError(f"line search invoked with a non-descent direction: {dd}")

    def zoom(low: _Bracket, high: _Bracket) -> float:
        for _ in range(10):
            t = _interp(high, low) if low.t > high.t else _interp(low, high)
            if math.isnan(t):
                raise FirstOrderError("line search zoom failed")
            c = phi(t)
            if c.fval > fval + c1 * c.t * dd or c.fval >= low.fval:
                high = c
            else:
                if abs(c.dd) <= c2 * abs(dd):
                    return c.t
                if c.dd * (high.t - low.t) >= 0:
                    high = low
                low = c
        raise FirstOrderError("line search zoom failed")

    for i in range(10):
        c = phi(t)
        if math.isinf(c.fval) or math.isnan(c.fval):
            t /= 2.0
            continue
        if c.fval > fval + c1 * t * dd or (c.fval >= low.fval and i > 0):
            return zoom(low, c)
        if abs(c.dd) <= c2 * abs(dd):
            return c.t
        if c.dd >= 0:
            return zoom(c, low)
        low = c
        t *= 1.5
    raise FirstOrderError("line search failed")


def backtracking(
    along: Callable[[float], tuple[float, float]], init: float, init_value: float, shrink: float
) -> float:
    """breeze's ``BacktrackingLineSearch(initfval, shrinkStep=shrink).minimize(f, init)``, with
    its quirks: the first point's value is ``initfval`` (OWL-QN passes the unpenalized value at
    the current point), and after 20 evaluations it returns the 19th step without complaint."""
    grow, c_armijo, c_wolfe, max_iterations = 2.1, 1e-4, 0.9, 20
    f0, df0 = along(0.0)
    alpha, value, deriv = init, init_value, along(init)[1]
    for iteration in range(1, max_iterations + 1):
        if value > f0 + alpha * df0 * c_armijo:
            multiplier = shrink
        elif deriv < c_wolfe * df0:
            multiplier = grow
        elif deriv > -c_wolfe * df0:
            multiplier = shrink
        else:
            return alpha
        new_alpha = alpha * multiplier
        if new_alpha < 1e-10:
            raise FirstOrderError("step size underflow")
        if new_alpha > 1e10:
            raise FirstOrderError("step size overflow")
        new_value, new_deriv = along(new_alpha)
        if iteration >= max_iterations:
            return alpha
        alpha, value, deriv = new_alpha, new_value, new_deriv
    return alpha  # not reached


def fit(
    features: Vector,
    labels: Vector,
    reg_param: float,
    elastic_net_param: float,
    max_iter: int,
    tol: float = TOL,
) -> Fit:
    """``LogisticRegression(regParam, elasticNetParam, maxIter, tol).fit`` on these rows."""
    return Problem(features, labels).fit(reg_param, elastic_net_param, max_iter, tol)


@dataclass(frozen=True)
class CrossValidation:
    """``metrics[fold][point]``: accuracies; ``closeness``: the nearest any held-out row came
    to a fit's decision boundary (``Fit.closeness``), over all folds and points."""

    metrics: list[list[float]]
    closeness: float


def cross_validate(
    features: Vector, labels: Vector, folds: Vector, num_folds: int, grid: Sequence[dict]
) -> CrossValidation:
    """``CrossValidator`` with ``foldCol`` and ``MulticlassClassificationEvaluator("accuracy")``:
    the accuracy of each grid point (``regParam``, ``elasticNetParam``, ``maxIter``) on each
    held-out fold."""
    metrics, closeness = [], math.inf
    for k in range(num_folds):
        train, held = folds != k, folds == k
        problem = Problem(features[train], labels[train])
        row = []
        for point in grid:
            model = problem.fit(
                float(point["regParam"]), float(point["elasticNetParam"]), int(point["maxIter"])
            )
            correct = float((model.predict(features[held]) == labels[held]).sum())
            row.append(correct / float(held.sum()))
            closeness = min(closeness, model.closeness(features[held]))
        metrics.append(row)
    return CrossValidation(metrics, closeness)


# --- the tune job's interface: cross-validate by replay, checked, or say why not ----------------
# The tune job calls ``choose`` and runs ``CrossValidator`` on any reason it returns instead:
# removing the replay is removing this module and that call.

# The pyspark versions whose LogisticRegression (and breeze) this module replays step for step:
# tests/spark/test_local_lr.py checks the replay against that version's own fits. After an
# upgrade, run it and add the version if it still passes (CONTRIBUTING.md).
REPLAYED_PYSPARK = ("4.2.0",)


def declined_version(installed: str | None = None) -> str | None:
    """Why not to replay on this pyspark (``None``: it is one that was checked)."""
    if installed is None:
        from importlib.metadata import version

        installed = version("pyspark")
    if installed in REPLAYED_PYSPARK:
        return None
    return (
        f"pyspark {installed}: local_lr replays the LogisticRegression of pyspark "
        f"{', '.join(REPLAYED_PYSPARK)} only"
    )


# The replay's bound: rows x features of the training split held as float64 by the one Python
# worker that replays the grid, with a scaled copy per fold: the bound keeps that worker's
# memory (outside spark.executor.memory) to a fraction of a GB. A Python error in
# the task comes back as the reason to decline; a killed worker fails the task, which Spark
# retries (spark.task.maxFailures) before the job fails and CrossValidator runs.
REPLAY_MAX_VALUES = 16_000_000
# The replay of the chosen point against Spark's refit: relative difference of the
# coefficients. Only the order of float sums differs, so agreement is orders of magnitude
# tighter than this; a different optimizer path would differ in the second digit.
REFIT_AGREEMENT = 1e-6
# ... and how near a held-out row may come to a replayed fit's decision boundary (min |margin|
# over the size of its terms) before a ~1e-11 difference between the engines could flip it.
CLOSE_CALL = 1e-8


@dataclass(frozen=True)
class ReplayCV:
    """The replay's result: ``CrossValidator``'s means, stds and choice (the first best, as its
    ``argmax``), how near a held-out row came to a decision boundary, and the replay's fit of
    the chosen point on the whole split (to check against Spark's)."""

    means: list[float]
    stds: list[float]
    best: int
    closeness: float
    coefficients: list[float]
    intercept: float

    def disagreement(self, spark_model) -> float:
        """Relative difference of Spark's fit of the chosen point and the replay of it."""
        import numpy as np

        ours = np.append(self.coefficients, self.intercept)
        theirs = np.append(spark_model.coefficients.toArray(), spark_model.intercept)
        return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300))


_REPLAY_SCHEMA = (
    "declined string, means array<double>, stds array<double>, best int, closeness double, "
    "coefficients array<double>, intercept double"
)


def replay_task(num_folds: int, points: list[dict]):
    """``mapInPandas``'s function over the one partition of the training split: the grid's
    cross-validation and the chosen point's fit on the whole split, replayed; one row out.
    Whatever goes wrong comes back as ``declined`` (a bug or an input the replay cannot take),
    not as a failed task that Spark would retry."""

    def replay(batches):
        import numpy as np
        import pandas as pd

        # this module as the worker imports it, by name (the function is shipped by value)
        from spark_tasks import local_lr

        def row(declined="", means=(), stds=(), best=-1, closeness=0.0, coef=(), icpt=0.0):
            return pd.DataFrame({
                "declined": [declined], "means": [list(means)], "stds": [list(stds)],
                "best": [best], "closeness": [closeness], "coefficients": [list(coef)],
                "intercept": [icpt],
            })  # fmt: skip

        try:
            parts = list(batches)
            frame = pd.concat(parts) if parts else pd.DataFrame(columns=["x", "y", "fold"])
            features = np.stack(frame["x"].to_numpy()) if len(frame) else np.zeros((0, 0))
            labels = frame["y"].to_numpy(dtype=np.float64)
            folds = frame["fold"].to_numpy()
            del parts, frame
            if not local_lr.supports(labels, folds, num_folds):
                yield row("not two classes in every fold's training part, or folds not 0..k-1")
                return
            cv = local_lr.cross_validate(features, labels, folds, num_folds, points)
            means, stds = np.mean(cv.metrics, axis=0), np.std(cv.metrics, axis=0)  # as CV
            best = int(np.argmax(means))
            point = points[best]
            chosen = local_lr.fit(
                features, labels, point["regParam"], point["elasticNetParam"], point["maxIter"]
            )
            yield row("", means, stds, best, cv.closeness, chosen.coefficients, chosen.intercept)
        except Exception as exc:
            yield row(f"the replay failed: {type(exc).__name__}: {exc}"[:2000])

    return replay


def replay_cross_validation(data, num_folds: int, points: list[dict]) -> ReplayCV | str:
    """Cross-validate by replaying the fits in one Spark task over the cached split, or say why
    not: these fits are not ones ``local_lr`` replays, or the split is too big for one worker."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from spark_tasks.classification import LABEL_INDEX

    first = data.select("features").head()
    width = first["features"].size if first is not None else 0
    count = data.count()
    if count * width > REPLAY_MAX_VALUES:
        return f"{count} rows x {width} features is over {REPLAY_MAX_VALUES:,} values"
    rows = data.select(
        vector_to_array(F.col("features")).alias("x"),
        F.col(LABEL_INDEX).alias("y"),
        F.col("fold"),
    ).coalesce(1)  # the whole split in one task (cv_data keeps it in one partition already)
    out = rows.mapInPandas(replay_task(num_folds, points), _REPLAY_SCHEMA).collect()
    if len(out) != 1:
        return f"the replay returned {len(out)} results, not 1"
    r = out[0]
    if r["declined"]:
        return str(r["declined"])
    return ReplayCV(
        [float(m) for m in r["means"]], [float(s) for s in r["stds"]], int(r["best"]),
        float(r["closeness"]), [float(c) for c in r["coefficients"]], float(r["intercept"]),
    )  # fmt: skip


def choose(data, lr, grid, points: list[dict], num_folds: int) -> Choice | str:
    """The replay's choice, checked: Spark ML refits the chosen point and must agree with the
    replay of it; no held-out row may sit on a fit's decision boundary. Else why not (the
    caller runs ``CrossValidator``)."""
    if (other := declined_version()) is not None:
        return other
    try:
        result = replay_cross_validation(data, num_folds, points)
    except Exception as exc:  # a bug or an input the replay cannot take: Spark's own path
        return f"the replay failed: {type(exc).__name__}: {exc}"
    if isinstance(result, str):
        return result
    if not result.closeness >= CLOSE_CALL:
        return f"a held-out row within {result.closeness:.1g} of a fit's decision boundary"
    model = lr.fit(data, grid[result.best])
    point = points[result.best]
    disagreement = result.disagreement(model)
    if not disagreement <= REFIT_AGREEMENT:
        return f"the replay of {point} differs from Spark's refit by {disagreement:.2g}"
    engine = {"engine": "replay", "refit_disagreement": disagreement, "closeness": result.closeness}
    from spark_tasks.classification import Choice

    return Choice(result.means, result.stds, result.best, model, engine)
