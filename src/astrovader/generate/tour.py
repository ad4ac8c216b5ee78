"""The interpolation tour (Fig. 10): the most probable member of each component, visited in the
order of the shortest tour through latent space, solved exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import cdist

from astrovader.errors import AstroVaDErError
from astrovader.generate.latents import interpolate_latents
from astrovader.model.inference import decode
from astrovader.model.vade import VaDE

# The tour solver works on integer costs: latent distances scaled so the longest is this.
COST_RESOLUTION = 10**6
SOLVER_DETERMINISTIC_SECONDS = 60.0


def top_members(gamma: np.ndarray) -> dict[int, int]:
    """{component: position of its most probable member}: among the objects whose top component
    is c, the one with the highest gamma_c. Components that are nobody's top are left out."""
    from astrovader.analysis.clusters import most_probable_members as ranked  # here: it imports scikit-learn

    return {component: int(rows[0]) for component, rows in ranked(gamma).items() if len(rows)}


def tour_length(points: np.ndarray, order: Sequence[int], closed: bool = True) -> float:
    """Euclidean length of the path through points[order] (back to the start when closed)."""
    path = np.asarray(points, np.float64)[list(order) + list(order[:1] if closed else [])]
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def shortest_tour(points: np.ndarray, closed: bool = True) -> tuple[np.ndarray, bool]:
    """(order, proven optimal) of the shortest tour through the points (a closed cycle, or an
    open path when closed=False), solved exactly by OR-Tools CP-SAT's circuit constraint
    (single-threaded with a fixed seed and a deterministic time limit: same points, same order)."""
    from ortools.sat.python import cp_model

    count = len(points)
    if count <= 3 - (not closed):  # every order is equally short
        return np.arange(count), True
    # An open path is a closed tour through one extra node at distance 0 from all the others.
    nodes = count + (not closed)
    costs = np.zeros((nodes, nodes))
    costs[:count, :count] = cdist(points, points)
    costs = np.rint(costs * COST_RESOLUTION / max(costs.max(), np.finfo(float).tiny)).astype(np.int64)
    problem = cp_model.CpModel()
    arcs = {(i, j): problem.new_bool_var(f"{i}->{j}") for i in range(nodes) for j in range(nodes) if i != j}
    problem.add_circuit([(i, j, arc) for (i, j), arc in arcs.items()])
    problem.minimize(sum(int(costs[i, j]) * arc for (i, j), arc in arcs.items()))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.max_deterministic_time = SOLVER_DETERMINISTIC_SECONDS
    status = solver.solve(problem)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise AstroVaDErError(f"tour: the solver found no tour through {count} points ({solver.status_name(status)})")
    successor = {i: j for (i, j), arc in arcs.items() if solver.boolean_value(arc)}
    node, order = nodes - 1, []
    for _ in range(nodes):
        node = successor[node]
        order.append(node)
    order = [node for node in order if node < count]
    if closed:  # start the cycle at the first point
        order = order[order.index(0):] + order[: order.index(0)]
    return np.array(order), status == cp_model.OPTIMAL


@dataclass
class Tour:
    """Fig. 10: legs between the most probable members of the components, in tour order."""

    components: np.ndarray  # (m,) components in the order visited
    members: np.ndarray  # (m,) position of each one's most probable member in the pixels given
    length: float  # latent-space length of the tour
    identity_length: float  # of visiting the same components in index order
    optimal: bool  # proven shortest by the solver
    closed: bool
    z: np.ndarray = field(repr=False)  # (legs, steps, J)
    images: np.ndarray = field(repr=False)  # (legs, steps, C, H, W); each leg starts and ends at a reconstruction


def tour(model: VaDE, mu: np.ndarray, gamma: np.ndarray, steps: int = 8, closed: bool = True) -> Tour:
    """The most probable member of each component (from the embeddings mu (N, J) and gamma
    (N, K) of `model.inference.model_outputs`), ordered by the shortest (travelling-salesperson) tour
    through their mu, and the images decoded along each leg."""
    members = top_members(gamma)
    if len(members) < 2:
        raise AstroVaDErError(f"tour: the galaxies given are the top members of {len(members)} component(s); need 2 or more")
    components = np.array(list(members))
    points = np.asarray(mu)[[members[c] for c in components]]
    order, optimal = shortest_tour(points, closed)
    stops = points[order]
    ends = list(zip(stops, np.roll(stops, -1, axis=0)))[: len(stops) if closed else len(stops) - 1]
    z = np.stack([interpolate_latents(a, b, steps) for a, b in ends])
    images = decode(model, z.reshape(-1, z.shape[-1])).reshape(*z.shape[:2], *model.config.data.input_shape)
    return Tour(
        components=components[order], members=np.array([members[c] for c in components[order]]),
        length=tour_length(points, order, closed), identity_length=tour_length(points, range(len(points)), closed),
        optimal=optimal, closed=closed, z=z, images=images,
    )
