"""One avatar ready to write (painted mesh, texture, dense PLY) and the anny bodies it is made from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.data.synth.geometry import Landmarks, landmarks, part_weights, subdivide_midpoint, vertex_normals
from backend.data.synth.outfits import Outfit
from backend.data.synth.paint import bake_texture, paint
from backend.errors import InputError

ANNY_INSTALL_HINT = "pip install --no-deps anny==0.6.2 roma"


@dataclass
class Avatar:
    """A painted body: textured mesh (OBJ export) and vertex-coloured dense mesh (PLY export)."""

    vertices: np.ndarray      # (N, 3) float64, metres, z up, facing -y
    faces: np.ndarray         # (F, 3) int64
    uv: np.ndarray            # (T, 2) float64
    face_uv: np.ndarray       # (F, 3) int64
    texture: np.ndarray       # (S, S, 3) uint8
    dense_vertices: np.ndarray
    dense_faces: np.ndarray
    dense_colors: np.ndarray  # (M, 3) float32 sRGB
    outfit: Outfit
    landmarks: Landmarks

    @property
    def height(self) -> float:
        return float(np.ptp(self.vertices[:, 2]))


def quantize(x: np.ndarray, decimals: int) -> np.ndarray:
    """Round to a decimal grid so that a ``%.{decimals}f`` text file reads back to the identical doubles."""
    scale = 10.0 ** decimals
    return np.rint(np.asarray(x, dtype=np.float64) * scale) / scale


VERTEX_DECIMALS = 5   # 10 µm
UV_DECIMALS = 6


def paint_avatar(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, face_uv: np.ndarray,
                 weights: np.ndarray, outfit: Outfit, texture_size: int = 1024, subdivisions: int = 1
                 ) -> Avatar:
    """Paint one body: bake the texture and colour the vertices of a ``subdivisions``-times split copy.

    Vertices and UVs are first put on the grid the OBJ is written with, so repainting the written file
    gives the same texture bit for bit.
    """
    v = quantize(vertices, VERTEX_DECIMALS)
    t = quantize(uv, UV_DECIMALS)
    f = np.asarray(faces, dtype=np.int64)
    ft = np.asarray(face_uv, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float32)
    marks = landmarks(v, w)
    texture = bake_texture(v, f, t, ft, w, marks, outfit, size=texture_size)
    dv, df, (dn, dw) = v, f, (vertex_normals(v, f), w)
    for _ in range(subdivisions):
        dv, df, (dn, dw) = subdivide_midpoint(dv, df, dn, dw)
    colors, _ = paint(dv, dn, dw, marks, outfit)
    return Avatar(vertices=v, faces=f, uv=t, face_uv=ft, texture=texture, dense_vertices=dv,
                  dense_faces=df, dense_colors=colors, outfit=outfit, landmarks=marks)


# Plausible adults: (low, high) of each anny phenotype slider; height is solved for separately.
PHENOTYPE_RANGES: dict[str, tuple[float, float]] = {
    "age": (0.6, 0.9),            # anny: 1/3 child, 2/3 young adult (~25 y), 1 old (~90 y)
    "muscle": (0.25, 0.75),
    "weight": (0.2, 0.75),
    "proportions": (0.2, 0.7),
    "cupsize": (0.25, 0.75),
    "firmness": (0.3, 0.8),
}
# Adult stature (m), mean and spread by sex, clipped to HEIGHT_LIMITS.
STATURE = {"male": (1.76, 0.07), "female": (1.63, 0.065)}
HEIGHT_LIMITS = (1.52, 1.97)
LOCAL_CHANGE_SIGMA = 0.06
LOCAL_CHANGE_LIMIT = 0.15


def random_identity(rng: np.random.Generator, local_change_labels: list[str]
                    ) -> tuple[dict[str, float], dict[str, float], float]:
    """(phenotype sliders without height, mild symmetric local changes, target height in metres)."""
    sex = "male" if rng.random() < 0.5 else "female"
    pheno = {"gender": float(rng.uniform(0.0, 0.12) if sex == "male" else rng.uniform(0.88, 1.0))}
    for key, (lo, hi) in PHENOTYPE_RANGES.items():
        pheno[key] = float(rng.uniform(lo, hi))
    ancestry = rng.dirichlet([0.6, 0.6, 0.6])
    pheno.update(african=float(ancestry[0]), asian=float(ancestry[1]), caucasian=float(ancestry[2]))
    pheno = {k: round(v, 4) for k, v in pheno.items()}
    local: dict[str, float] = {}
    for label in local_change_labels:
        if label.startswith("r-") or "trans-out" in label or "pregnant" in label:
            continue  # right sides mirror the left; sideways shifts and pregnancy are not "mild"
        value = round(float(np.clip(rng.normal(0, LOCAL_CHANGE_SIGMA), -LOCAL_CHANGE_LIMIT,
                                    LOCAL_CHANGE_LIMIT)), 4)
        local[label] = value
        if label.startswith("l-") and "r-" + label[2:] in local_change_labels:
            local["r-" + label[2:]] = value
    mean, sd = STATURE[sex]
    target = float(np.clip(rng.normal(mean, sd), *HEIGHT_LIMITS))
    return pheno, local, round(target, 4)


class AnnyBodies:
    """anny's full-body model, built once (the first build caches ~1 GB under $ANNY_CACHE_DIR)."""

    def __init__(self) -> None:
        import warnings

        try:
            import anny
            import roma  # noqa: F401  (anny needs it; fail here with the hint, not deep inside anny)
            import torch
        except ImportError as exc:
            raise InputError(f"the sample avatars need anny and roma ({exc.name} is missing): "
                             f"{ANNY_INSTALL_HINT}") from exc
        self._torch = torch
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ww]arp.*")
            self.model = anny.Anny(local_changes="default", phenotypes="all")
        m = self.model
        self.version = getattr(anny, "__version__", "unknown")
        self.faces = m.faces.cpu().numpy().astype(np.int64)
        # anny's atlas lists UVs no body face uses (helper geometry): keep only the used ones.
        face_uv = m.face_texture_coordinate_indices.cpu().numpy().astype(np.int64)
        used, self.face_uv = np.unique(face_uv, return_inverse=True)
        self.face_uv = self.face_uv.reshape(face_uv.shape)
        self.uv = m.texture_coordinates.cpu().numpy().astype(np.float64)[used]
        self.weights = part_weights(list(m.bone_labels), m.vertex_bone_indices.cpu().numpy(),
                                    m.vertex_bone_weights.cpu().numpy())
        self.local_change_labels = list(m.local_change_labels)
        self.bone_labels = list(m.bone_labels)

    def vertices(self, phenotype: dict[str, float], local_changes: dict[str, float],
                 heights: list[float], pose: dict[str, tuple[float, float, float]] | None = None
                 ) -> np.ndarray:
        """(len(heights), N, 3) vertices for each value of the height slider: rest pose, or ``pose``
        (bone label -> Euler angles, :mod:`.poses`)."""
        torch = self._torch
        b = len(heights)
        pk = {k: torch.full((b,), float(v), dtype=torch.float64) for k, v in phenotype.items()}
        pk["height"] = torch.tensor(heights, dtype=torch.float64)
        lk = {k: torch.full((b,), float(v), dtype=torch.float64) for k, v in local_changes.items()}
        extra = {}
        if pose:
            from backend.data.synth.poses import pose_transforms

            extra["pose_parameters"] = {k: torch.as_tensor(v, dtype=torch.float64).expand(b, 4, 4)
                                        for k, v in pose_transforms(pose).items()}
        with torch.no_grad():
            out = self.model(phenotype_kwargs=pk, local_changes_kwargs=lk, **extra)
        return out["vertices"].cpu().numpy().astype(np.float64)

    def body(self, phenotype: dict[str, float], local_changes: dict[str, float], target_height: float,
             pose: dict[str, tuple[float, float, float]] | None = None) -> tuple[np.ndarray, float]:
        """Vertices of the body whose standing height is ``target_height``, and the height slider used.

        Height is linear in anny's height slider for fixed other sliders, so two evaluations give the
        slider, and a secant step absorbs what the local changes add. The height is that of the rest
        pose; ``pose`` is applied last, at the chosen slider.
        """
        ends = self.vertices(phenotype, local_changes, [0.0, 1.0])
        h0, h1 = (float(np.ptp(e[:, 2])) for e in ends)
        s = float(np.clip((target_height - h0) / (h1 - h0), 0.0, 1.0))
        v = self.vertices(phenotype, local_changes, [s])[0]
        h = float(np.ptp(v[:, 2]))
        if abs(h - target_height) > 0.005 and 0.0 < s < 1.0:
            s = float(np.clip(s + (target_height - h) / (h1 - h0), 0.0, 1.0))
            v = self.vertices(phenotype, local_changes, [s])[0]
        if pose:
            v = self.vertices(phenotype, local_changes, [s], pose)[0]
        return v, round(s, 6)
