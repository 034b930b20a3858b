"""The one canonical space of avatex (docs/architecture.md): subject normalisation, view calibs, cameras.

Everything that places a subject or a camera goes through this module, on both sides of the wire:
the Blender renderer imports it (numpy only, no torch, no bpy) and the backend reads the `calib`
matrices the renderer stored. Nothing else derives a calib.

Conventions (PIFu's, so that the official checkpoints see what they were trained on):

* Canonical coordinates are PIFu's normalised image space of the yaw-0 view: x right, y up, +z toward
  the camera, z in the same units as x. The reconstruction box is [-1, 1]^3.
* A subject is rotated to y-up, centred on its per-axis vertex median with the up component replaced by
  the bounding-box mid-height, and scaled so that its height is ``CANONICAL_HEIGHT`` (450 of 512 px).
* View ``k`` rotates the subject by ``R = Rx(pitch) @ Ry(yaw)`` in front of a fixed orthographic camera
  (PIFu's ``make_rotate``). Its 4x4 ``calib`` maps canonical points to normalised image coordinates
  (x right, y *down* as ``grid_sample`` reads them, z toward the camera): ``calib = diag(1,-1,1,1) @ [R|0]``.
* Normalised image coordinate u in [-1, 1] lands on pixel centre ``(u + 1) / 2 * (W - 1)``, exactly as
  ``grid_sample(..., align_corners=True)`` reads it. The renderer therefore sets the orthographic camera
  to span ``ortho_scale(W)`` canonical units, slightly more than 2, so rendered pixels and sampled
  features agree to a fraction of a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 512
"""Network input size of the official PIFu checkpoints."""

SUBJECT_PIXELS = 450
"""Height of a normalised subject in pixels of a ``IMAGE_SIZE`` image (PIFu: 180 units / ortho 0.4)."""

CANONICAL_HEIGHT = 2.0 * SUBJECT_PIXELS / IMAGE_SIZE
"""Subject height in canonical units: 1.7578125."""

DEPTH_FEATURE_SCALE = (IMAGE_SIZE // 2) / 200.0
"""PIFu's depth feature is ``z * loadSize/2 / z_size`` = 1.28 z."""

BOX_MIN = (-1.0, -1.0, -1.0)
BOX_MAX = (1.0, 1.0, 1.0)

# Blender is z-up and its front view looks along +Y. Canonical y (up) becomes Blender Z and canonical +z
# (toward the yaw-0 camera) becomes Blender -Y, so the yaw-0 view is Blender's front view.
BLENDER_FROM_CANONICAL = np.array(
    [[1.0, 0.0, 0.0, 0.0],
     [0.0, 0.0, -1.0, 0.0],
     [0.0, 1.0, 0.0, 0.0],
     [0.0, 0.0, 0.0, 1.0]]
)

# z-up scans (anny, many Blender scenes) face -y; this maps (x, y, z) -> (x, z, -y): up becomes +y and
# the front (-y) becomes +z, toward the yaw-0 camera.
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def rotation_x(degrees: float) -> np.ndarray:
    """3x3 rotation about +x (right-handed), PIFu's ``make_rotate(rx, 0, 0)``."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(degrees: float) -> np.ndarray:
    """3x3 rotation about +y (right-handed), PIFu's ``make_rotate(0, ry, 0)``."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def view_rotation(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Rotation applied to the subject for a view: ``Rx(pitch) @ Ry(yaw)``."""
    return rotation_x(pitch_deg) @ rotation_y(yaw_deg)


def calib_for_view(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """4x4 calib mapping canonical points to normalised image coordinates (y down) for one view.

    For yaw 0 and pitch 0 it is ``diag(1, -1, 1, 1)``, PIFu's evaluation calib.
    """
    calib = np.eye(4)
    calib[:3, :3] = np.diag([1.0, -1.0, 1.0]) @ view_rotation(yaw_deg, pitch_deg)
    return calib


def camera_unit(ortho_scale: float, width: int, height: int) -> float:
    """World units per normalised image unit along the larger side of an orthographic camera's image:
    u = +-1 on the centres of the border pixels (``align_corners=True``), with Blender's automatic
    sensor fit (``ortho_scale`` spans the larger side)."""
    side = max(int(width), int(height))
    return 0.5 * float(ortho_scale) * (side - 1) / side


def calib_for_camera(world_from_camera: np.ndarray, ortho_scale: float, width: int, height: int,
                     origin: np.ndarray, unit: float,
                     world_from_canonical: np.ndarray = BLENDER_FROM_CANONICAL) -> np.ndarray:
    """4x4 calib of any orthographic camera of a scene, in the canonical space placed at ``origin``.

    Canonical point c sits in the world at ``origin + unit * world_from_canonical @ c`` (``unit`` world
    units per canonical unit). The calib maps it to the camera's normalised image coordinates (x right,
    y down, each side's border pixel centres at +-1) and to depth toward the camera, in the x scale and
    relative to ``origin``, as PIFu's depth feature expects. A camera built like the renderer's view k
    (:func:`camera_to_canonical`, ``ortho_scale(W)``, origin 0, unit 1) gives :func:`calib_for_view`.
    """
    w, h = int(width), int(height)
    half = camera_unit(ortho_scale, w, h)
    side = max(w, h)
    # The border pixel centres of a side of n pixels sit (n - 1) / 2 pixels from the image centre.
    scale_x = half * (w - 1) / (side - 1) if side > 1 else half
    scale_y = half * (h - 1) / (side - 1) if side > 1 else half
    camera_from_world = np.linalg.inv(np.asarray(world_from_camera, dtype=np.float64))
    rot = camera_from_world[:3, :3] @ np.asarray(world_from_canonical, dtype=np.float64)[:3, :3] * unit
    at_origin = camera_from_world[:3, :3] @ np.asarray(origin, dtype=np.float64) + camera_from_world[:3, 3]
    calib = np.eye(4)
    calib[:3, :3] = np.diag([1.0 / scale_x, -1.0 / scale_y, 1.0 / scale_x]) @ rot
    calib[:3, 3] = np.array([at_origin[0] / scale_x, -at_origin[1] / scale_y, 0.0])
    return calib


def calib_problem(calib: object) -> str | None:
    """What makes ``calib`` unusable as a view's calib, in one sentence, or None when it is fine.

    PIFu's calibs are affine maps (last row 0 0 0 1) whose 3 x 3 part is invertible: a singular one
    would project the whole subject onto a line or a point of the image.
    """
    try:
        c = np.asarray(calib, dtype=np.float64)
    except (TypeError, ValueError):
        return "the calib must be a 4 x 4 matrix of numbers"
    if c.shape != (4, 4):
        return f"the calib must be a 4 x 4 matrix, got shape {list(c.shape)}"
    if not np.isfinite(c).all():
        return "the calib has non-finite entries"
    if np.abs(c[3] - (0.0, 0.0, 0.0, 1.0)).max() > 1e-6:
        return f"the calib's last row must be 0 0 0 1 (an affine map), got {' '.join(f'{x:g}' for x in c[3])}"
    if abs(np.linalg.det(c[:3, :3])) < 1e-8:
        return "the calib's 3 x 3 part is singular (it flattens the subject)"
    return None


def view_yaws(views: int = 45, step_deg: float = 8.0) -> list[float]:
    """Yaw angles of the default orbit: 0, 8, ..., 352 degrees."""
    return [float(k * step_deg) for k in range(views)]


def project(points: np.ndarray, calib: np.ndarray) -> np.ndarray:
    """Apply a calib to (N, 3) canonical points: PIFu's ``orthogonal(points, calib)``, row-major."""
    points = np.asarray(points, dtype=np.float64)
    calib = np.asarray(calib, dtype=np.float64)
    return points @ calib[:3, :3].T + calib[:3, 3]


def to_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """Normalised image coordinates (N, 2) -> continuous pixel coordinates (column, row).

    Pixel ``i`` has its centre at ``i``; u = -1 and u = 1 are the centres of the first and last pixel.
    """
    return (np.asarray(uv, dtype=np.float64) + 1.0) * 0.5 * (size - 1)


def ortho_scale(size: int) -> float:
    """Canonical units spanned edge to edge by an orthographic camera rendering ``size`` pixels.

    Chosen so that u = +-1 fall on pixel centres (the ``align_corners=True`` convention).
    """
    return 2.0 * size / (size - 1)


def camera_to_canonical(yaw_deg: float, pitch_deg: float = 0.0, distance: float = 10.0) -> np.ndarray:
    """4x4 pose of the orthographic camera of a view, in canonical space.

    Rotating the subject by R in front of a fixed camera is the same picture as orbiting the camera by
    R^T around a fixed subject. The camera's local axes (x right, y up, z backward, as in Blender and
    OpenGL) are the columns of R^T, and it sits ``distance`` units along its backward axis.
    """
    rt = view_rotation(yaw_deg, pitch_deg).T
    pose = np.eye(4)
    pose[:3, :3] = rt
    pose[:3, 3] = rt @ np.array([0.0, 0.0, distance])
    return pose


def camera_frame_to_canonical(points_cam: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Points given in a view's camera frame (x right, y up, z toward the camera) -> canonical space.

    Light positions are specified this way, so a light keeps its place relative to the camera as the
    camera orbits, like the paper's lighting levels.
    """
    rt = view_rotation(yaw_deg, pitch_deg).T
    return np.asarray(points_cam, dtype=np.float64) @ rt.T


def detect_up_axis(vertices: np.ndarray) -> str:
    """Guess the up axis of a standing human: the longest bounding-box extent among y and z.

    This is PIFu's rule. A lying-down scan or an A-pose wider than tall fools it; pass the up axis
    explicitly in those cases.
    """
    extent = np.ptp(np.asarray(vertices, dtype=np.float64), axis=0)
    return "y" if extent[1] >= extent[2] else "z"


@dataclass(frozen=True)
class Normalization:
    """Similarity transform from a subject's source coordinates to canonical space.

    ``canonical = scale * (rotation @ p - center)``; ``center`` is given in the rotated (y-up) frame.
    """

    rotation: np.ndarray
    center: np.ndarray
    scale: float
    up_axis: str
    source_height: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return (points @ self.rotation.T - self.center) * self.scale

    def apply_to_directions(self, directions: np.ndarray) -> np.ndarray:
        """Rotate normals or other directions (no translation, no scale)."""
        return np.asarray(directions, dtype=np.float64) @ self.rotation.T

    def invert(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        return (points / self.scale + self.center) @ self.rotation

    def matrix(self) -> np.ndarray:
        """The same transform as a 4x4 matrix acting on column vectors."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = -self.scale * self.center
        return m

    def to_dict(self) -> dict:
        return {
            "rotation": self.rotation.tolist(),
            "center": self.center.tolist(),
            "scale": float(self.scale),
            "up_axis": self.up_axis,
            "source_height": float(self.source_height),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(
            rotation=np.asarray(d["rotation"], dtype=np.float64),
            center=np.asarray(d["center"], dtype=np.float64),
            scale=float(d["scale"]),
            up_axis=str(d["up_axis"]),
            source_height=float(d["source_height"]),
        )


def normalization_for(vertices: np.ndarray, up_axis: str = "auto") -> Normalization:
    """The PIFu normalisation of a subject (docs/architecture.md).

    ``up_axis`` is ``"y"``, ``"z"`` or ``"auto"`` (see :func:`detect_up_axis`). Units do not matter: a
    scan in centimetres and the same scan in metres get the same canonical vertices.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 4:
        raise ValueError(f"need an (N>=4, 3) vertex array to normalise, got shape {vertices.shape}")
    if not np.isfinite(vertices).all():
        raise ValueError("subject has non-finite vertex coordinates (NaN or inf)")
    if up_axis == "auto":
        up_axis = detect_up_axis(vertices)
    if up_axis == "y":
        rotation = np.eye(3)
    elif up_axis == "z":
        rotation = _Z_UP_TO_Y_UP.copy()
    else:
        raise ValueError(f"up_axis must be 'y', 'z' or 'auto', got {up_axis!r}")
    rotated = vertices @ rotation.T
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    height = float(hi[1] - lo[1])
    if height <= 0.0:
        raise ValueError("subject has zero height along its up axis")
    center = np.median(rotated, axis=0)
    center[1] = 0.5 * (lo[1] + hi[1])
    return Normalization(rotation=rotation, center=center, scale=CANONICAL_HEIGHT / height,
                         up_axis=up_axis, source_height=height)
