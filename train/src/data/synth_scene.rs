//! What a synthetic frame contains: lighting, belt, parts and defects, sampled from the frame's
//! RNG. Rendering is separate (`synth_render`), so the scene can be inspected in tests.
use contextrast_model::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Which look of the line to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The line as commissioned.
    Standard,
    /// The same classes under other lighting, belt and materials (domain shift).
    Shifted,
}

impl Variant {
    /// Parses `standard` / `shifted` (for CLIs and configs).
    pub fn parse(s: &str) -> Option<Variant> {
        match s.to_ascii_lowercase().as_str() {
            "standard" => Some(Variant::Standard),
            "shifted" => Some(Variant::Shifted),
            _ => None,
        }
    }

    /// The lowercase name, as [`Variant::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Standard => "standard",
            Variant::Shifted => "shifted",
        }
    }

    pub(super) fn tag(self) -> u64 {
        match self {
            Variant::Standard => 0x0053_5444,
            Variant::Shifted => 0x0053_4846,
        }
    }

    /// File-name prefix, so datasets of both variants can share a folder.
    pub(super) fn prefix(self) -> &'static str {
        match self {
            Variant::Standard => "std",
            Variant::Shifted => "shf",
        }
    }
}

/// Lighting and camera response of one frame.
pub(super) struct Light {
    /// Colour of the illuminant times exposure, per channel.
    pub gain: [f32; 3],
    /// Linear brightness ramp across the frame: value at the edges is 1 ± |grad|.
    pub grad: [f32; 2],
    /// Darkening at the frame corners (0 = none).
    pub vignette: f32,
    /// Unit vector in the image plane pointing towards the light (bevels, rims, shadows).
    pub dir: [f32; 2],
    /// Sensor noise: read noise (constant) and shot noise (grows with signal), in 0..1 units.
    pub read_noise: f32,
    pub shot_noise: f32,
}

/// A metal guide rail along the top or bottom edge of the belt.
pub(super) struct Rail {
    pub top: bool,
    pub height: f32,
    pub color: [f32; 3],
}

/// A dust speck or crumb lying on the belt: a distractor that is not a defect.
pub(super) struct Speck {
    pub x: f32,
    pub y: f32,
    pub r: f32,
    pub delta: f32,
}

pub(super) struct Belt {
    pub color: [f32; 3],
    pub grain: f32,
    pub mottle: f32,
    pub rib_amp: f32,
    pub rib_period: f32,
    /// x positions of splice seams across the belt.
    pub seams: Vec<f32>,
    pub rail: Option<Rail>,
    pub specks: Vec<Speck>,
    pub seed: u32,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Finish {
    /// Metal plate brushed along its long axis.
    Brushed,
    /// Metal turned on a lathe: concentric rings.
    Turned,
    /// Moulded plastic: fine isotropic grain.
    Grainy,
}

pub(super) struct Material {
    pub albedo: [f32; 3],
    pub finish: Finish,
    pub texture: f32,
    /// Peak specular intensity and the highlight's size as a fraction of the part radius.
    pub spec: f32,
    pub spec_size: [f32; 2],
}

pub(super) enum Shape {
    /// Rounded rectangle with optional through holes (x, y, radius in local coordinates).
    RoundRect {
        hw: f32,
        hh: f32,
        r: f32,
        holes: Vec<[f32; 3]>,
    },
    Disc {
        r: f32,
    },
    Ring {
        outer: f32,
        inner: f32,
    },
}

pub(super) struct Part {
    pub cx: f32,
    pub cy: f32,
    pub cos: f32,
    pub sin: f32,
    pub shape: Shape,
    pub mat: Material,
    /// Radius of the bounding circle.
    pub radius: f32,
    /// Specular highlight centre in local coordinates.
    pub highlight: [f32; 2],
    pub bevel: f32,
    /// Height above the belt in pixels: how far its shadow falls.
    pub height: f32,
    pub seed: u32,
}

impl Part {
    /// Image coordinates to the part's own frame (rotation undone).
    #[inline]
    pub fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        (
            dx * self.cos + dy * self.sin,
            -dx * self.sin + dy * self.cos,
        )
    }

    /// Signed distance in pixels (negative inside) in local coordinates.
    #[inline]
    pub fn sdf_local(&self, lx: f32, ly: f32) -> f32 {
        match &self.shape {
            Shape::RoundRect { hw, hh, r, holes } => {
                let qx = lx.abs() - hw + r;
                let qy = ly.abs() - hh + r;
                let outside = qx.max(0.0).hypot(qy.max(0.0));
                let mut d = outside + qx.max(qy).min(0.0) - r;
                for h in holes {
                    d = d.max(h[2] - (lx - h[0]).hypot(ly - h[1]));
                }
                d
            }
            Shape::Disc { r } => lx.hypot(ly) - r,
            Shape::Ring { outer, inner } => {
                let mid = 0.5 * (outer + inner);
                (lx.hypot(ly) - mid).abs() - 0.5 * (outer - inner)
            }
        }
    }

    #[inline]
    pub fn sdf(&self, x: f32, y: f32) -> f32 {
        let (lx, ly) = self.local(x, y);
        self.sdf_local(lx, ly)
    }
}

pub(super) enum DefectKind {
    /// A polyline of constant width; `contrast` is added to the surface (either sign).
    Scratch {
        pts: Vec<[f32; 2]>,
        half_width: f32,
        contrast: f32,
    },
    /// A dent: dark elliptical core with a bright raised rim of width `rim`.
    Pit {
        x: f32,
        y: f32,
        a: f32,
        b: f32,
        cos: f32,
        sin: f32,
        rim: f32,
        depth: f32,
        rim_gain: f32,
    },
    /// An irregular blob, radius modulated by harmonics, with a soft edge of width `edge`.
    Stain {
        x: f32,
        y: f32,
        r0: f32,
        harmonics: [[f32; 2]; 4],
        edge: f32,
        opacity: f32,
        color: [f32; 3],
        seed: u32,
    },
}

pub(super) struct Defect {
    pub part: usize,
    pub class_id: u8,
    pub kind: DefectKind,
    /// Pixel bounds that contain everything the defect draws: [x0, y0, x1, y1].
    pub bounds: [f32; 4],
}

pub(super) struct Scene {
    pub width: u32,
    pub height: u32,
    pub light: Light,
    pub belt: Belt,
    pub parts: Vec<Part>,
    pub defects: Vec<Defect>,
}

fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

fn jitter(rng: &mut SplitMix64, c: [f32; 3], amount: f32) -> [f32; 3] {
    let k = 1.0 + rng.range(-amount, amount);
    c.map(|v| (v * k * (1.0 + rng.range(-amount, amount) * 0.5)).clamp(0.0, 1.0))
}

fn sample_light(rng: &mut SplitMix64, variant: Variant) -> Light {
    let angle = rng.range(0.0, std::f32::consts::TAU);
    let dir = [angle.cos(), angle.sin()];
    let gangle = rng.range(0.0, std::f32::consts::TAU);
    let (tint, exposure, strength, vignette, read) = match variant {
        Variant::Standard => {
            let t = [
                1.0 + rng.range(-0.03, 0.03),
                1.0,
                1.0 + rng.range(-0.03, 0.03),
            ];
            (
                t,
                rng.range(0.9, 1.08),
                rng.range(0.04, 0.18),
                rng.range(0.12, 0.3),
                rng.range(0.005, 0.01),
            )
        }
        Variant::Shifted => {
            let t = if rng.chance(0.5) {
                [1.18, 0.98, 0.72] // warm: halogen / sodium
            } else {
                [0.78, 0.95, 1.22] // cold: daylight LED behind a blue filter
            };
            (
                t,
                rng.range(0.55, 0.78),
                rng.range(0.3, 0.5),
                rng.range(0.3, 0.5),
                rng.range(0.01, 0.018),
            )
        }
    };
    Light {
        gain: tint.map(|t| t * exposure),
        grad: [gangle.cos() * strength, gangle.sin() * strength],
        vignette,
        dir,
        read_noise: read,
        shot_noise: read * 0.6,
    }
}

fn sample_belt(rng: &mut SplitMix64, variant: Variant, w: f32, h: f32, unit: f32) -> Belt {
    let colors: &[[f32; 3]] = match variant {
        Variant::Standard => &[[0.2, 0.22, 0.21], [0.3, 0.3, 0.3], [0.16, 0.17, 0.19]],
        Variant::Shifted => &[[0.13, 0.25, 0.45], [0.55, 0.45, 0.32], [0.34, 0.52, 0.38]],
    };
    let base = pick(rng, colors);
    let color = jitter(rng, base, 0.08);
    let seams = (0..rng.below(2))
        .map(|_| rng.range(0.0, w))
        .collect::<Vec<_>>();
    let rail = rng.chance(0.35).then(|| Rail {
        top: rng.chance(0.5),
        height: rng.range(0.06, 0.12) * h,
        color: jitter(rng, [0.6, 0.61, 0.63], 0.1),
    });
    let n_specks = rng.below((12.0 * (w * h) / (256.0 * 256.0)) as u64 + 1);
    let specks = (0..n_specks)
        .map(|_| Speck {
            x: rng.range(0.0, w),
            y: rng.range(0.0, h),
            r: rng.range(0.6, 1.6),
            delta: rng.range(0.08, 0.22) * if rng.chance(0.5) { 1.0 } else { -1.0 },
        })
        .collect();
    Belt {
        color,
        grain: rng.range(0.03, 0.07),
        mottle: rng.range(0.04, 0.1),
        rib_amp: rng.range(0.0, 0.03),
        rib_period: rng.range(2.5, 6.0) * unit.sqrt(),
        seams,
        rail,
        specks,
        seed: rng.next_u64() as u32,
    }
}

fn sample_material(rng: &mut SplitMix64, variant: Variant, round: bool) -> Material {
    let metals: &[[f32; 3]] = match variant {
        Variant::Standard => &[[0.62, 0.63, 0.65], [0.76, 0.77, 0.79], [0.46, 0.48, 0.5]],
        Variant::Shifted => &[[0.75, 0.6, 0.32], [0.72, 0.46, 0.32], [0.5, 0.52, 0.56]],
    };
    let plastics: &[[f32; 3]] = match variant {
        Variant::Standard => &[
            [0.85, 0.85, 0.82],
            [0.13, 0.13, 0.14],
            [0.16, 0.3, 0.6],
            [0.5, 0.5, 0.5],
        ],
        Variant::Shifted => &[
            [0.9, 0.5, 0.12],
            [0.22, 0.55, 0.26],
            [0.88, 0.78, 0.2],
            [0.6, 0.15, 0.15],
        ],
    };
    if rng.chance(0.6) {
        let finish = if round && rng.chance(0.7) {
            Finish::Turned
        } else {
            Finish::Brushed
        };
        let long = rng.range(0.5, 0.9);
        let base = pick(rng, metals);
        Material {
            albedo: jitter(rng, base, 0.06),
            finish,
            texture: rng.range(0.06, 0.14),
            spec: rng.range(0.25, 0.5),
            spec_size: [long, long * rng.range(0.3, 0.6)],
        }
    } else {
        let s = rng.range(0.2, 0.35);
        let base = pick(rng, plastics);
        Material {
            albedo: jitter(rng, base, 0.06),
            finish: Finish::Grainy,
            texture: rng.range(0.03, 0.06),
            spec: rng.range(0.06, 0.16),
            spec_size: [s, s],
        }
    }
}

fn sample_shape(rng: &mut SplitMix64, radius: f32) -> Shape {
    let u = rng.f32();
    if u < 0.45 {
        let aspect = rng.range(1.0, 2.2);
        let hw = radius / (1.0 + 1.0 / (aspect * aspect)).sqrt();
        let hh = hw / aspect;
        let r = hh * rng.range(0.1, 0.5);
        let holes = (0..rng.below(3))
            .map(|i| {
                let side = if i == 0 { -1.0 } else { 1.0 };
                let hr = hh * rng.range(0.15, 0.3);
                [side * (hw - hh * 0.6), 0.0, hr]
            })
            .collect();
        Shape::RoundRect { hw, hh, r, holes }
    } else if u < 0.75 {
        Shape::Disc { r: radius }
    } else {
        Shape::Ring {
            outer: radius,
            inner: radius * rng.range(0.35, 0.65),
        }
    }
}

/// The band of the frame that is belt (not rail): [y0, y1).
pub(super) fn belt_band(belt: &Belt, h: f32) -> (f32, f32) {
    match &belt.rail {
        Some(r) if r.top => (r.height, h),
        Some(r) => (0.0, h - r.height),
        None => (0.0, h),
    }
}

fn sample_parts(
    rng: &mut SplitMix64,
    variant: Variant,
    w: f32,
    h: f32,
    band: (f32, f32),
    want: usize,
) -> Vec<Part> {
    let m = w.min(h);
    let mut parts: Vec<Part> = Vec::new();
    for _ in 0..want * 12 {
        if parts.len() == want {
            break;
        }
        let radius = rng.range(0.12, 0.28) * m;
        let cx = rng.range(0.0, w);
        let cy = rng.range(band.0 + 0.2 * radius, band.1 - 0.2 * radius);
        let clear = parts
            .iter()
            .all(|p| (p.cx - cx).hypot(p.cy - cy) > 1.05 * (p.radius + radius) + 4.0);
        if !clear {
            continue;
        }
        let shape = sample_shape(rng, radius);
        let round = !matches!(shape, Shape::RoundRect { .. });
        let angle = rng.range(0.0, std::f32::consts::TAU);
        let mat = sample_material(rng, variant, round);
        let hl = rng.range(0.0, std::f32::consts::TAU);
        let hd = rng.range(0.1, 0.45) * radius;
        parts.push(Part {
            cx,
            cy,
            cos: angle.cos(),
            sin: angle.sin(),
            shape,
            mat,
            radius,
            highlight: [hl.cos() * hd, hl.sin() * hd],
            bevel: rng.range(1.5, 4.0),
            height: rng.range(2.0, 6.0) * (m / 256.0).sqrt(),
            seed: rng.next_u64() as u32,
        });
    }
    parts
}

/// A point on `part` at least `margin` px inside it, inside the frame and off the rail.
fn point_on_part(
    rng: &mut SplitMix64,
    part: &Part,
    margin: f32,
    w: f32,
    band: (f32, f32),
) -> Option<[f32; 2]> {
    for _ in 0..40 {
        let x = part.cx + rng.range(-part.radius, part.radius);
        let y = part.cy + rng.range(-part.radius, part.radius);
        let inside_frame =
            x >= margin && x < w - margin && y >= band.0 + margin && y < band.1 - margin;
        if inside_frame && part.sdf(x, y) <= -margin {
            return Some([x, y]);
        }
    }
    None
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn sample_scratch(rng: &mut SplitMix64, part: &Part, start: [f32; 2]) -> DefectKind {
    let width = rng.range(1.0, 3.0);
    let length = rng.range(0.3, 1.1) * part.radius;
    let segments = 3 + rng.below(5) as usize;
    let mut angle = rng.range(0.0, std::f32::consts::TAU);
    let bend = rng.range(-0.25, 0.25);
    let step = length / segments as f32;
    let mut pts = vec![start];
    let mut p = start;
    for _ in 0..segments {
        angle += bend + 0.15 * rng.normal();
        p = [p[0] + step * angle.cos(), p[1] + step * angle.sin()];
        pts.push(p);
    }
    let lum = luminance(part.mat.albedo);
    let sign = if part.mat.finish != Finish::Grainy {
        if rng.chance(0.6) { 1.0 } else { -1.0 }
    } else if lum < 0.4 {
        1.0 // plastic whitens where it is scratched
    } else {
        -1.0
    };
    // Thin scratches are drawn a little stronger so that after blur they remain barely visible.
    let contrast = sign * rng.range(0.09, 0.17) * (2.0 / width).sqrt();
    DefectKind::Scratch {
        pts,
        half_width: 0.5 * width,
        contrast,
    }
}

fn sample_pit(rng: &mut SplitMix64, at: [f32; 2], unit: f32) -> DefectKind {
    let a = rng.range(1.5, 3.5) * unit.sqrt().clamp(0.75, 1.6);
    let angle = rng.range(0.0, std::f32::consts::TAU);
    DefectKind::Pit {
        x: at[0],
        y: at[1],
        a,
        b: a * rng.range(0.6, 1.0),
        cos: angle.cos(),
        sin: angle.sin(),
        rim: rng.range(0.8, 1.5),
        depth: rng.range(0.35, 0.6),
        rim_gain: rng.range(0.12, 0.3),
    }
}

fn sample_stain(rng: &mut SplitMix64, part: &Part, at: [f32; 2]) -> DefectKind {
    let lum = luminance(part.mat.albedo);
    let colors: &[[f32; 3]] = if lum < 0.3 {
        &[[0.8, 0.8, 0.76], [0.55, 0.32, 0.16]] // dried residue, rust
    } else {
        &[[0.18, 0.13, 0.07], [0.5, 0.28, 0.13], [0.3, 0.3, 0.12]] // oil, rust, coolant
    };
    let mut harmonics = [[0.0f32; 2]; 4];
    for (k, h) in harmonics.iter_mut().enumerate() {
        *h = [
            rng.range(-0.18, 0.18) / (k as f32 + 1.0).sqrt(),
            rng.range(0.0, std::f32::consts::TAU),
        ];
    }
    DefectKind::Stain {
        x: at[0],
        y: at[1],
        r0: rng.range(0.08, 0.25) * part.radius,
        harmonics,
        edge: rng.range(1.5, 3.0),
        opacity: rng.range(0.35, 0.7),
        color: pick(rng, colors),
        seed: rng.next_u64() as u32,
    }
}

fn bounds_of(kind: &DefectKind) -> [f32; 4] {
    match kind {
        DefectKind::Scratch {
            pts, half_width, ..
        } => {
            let pad = half_width + 1.5;
            let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
            for p in pts {
                b = [
                    b[0].min(p[0]),
                    b[1].min(p[1]),
                    b[2].max(p[0]),
                    b[3].max(p[1]),
                ];
            }
            [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad]
        }
        DefectKind::Pit { x, y, a, rim, .. } => {
            let r = a + rim + 1.5;
            [x - r, y - r, x + r, y + r]
        }
        DefectKind::Stain {
            x,
            y,
            r0,
            harmonics,
            edge,
            ..
        } => {
            let amp: f32 = harmonics.iter().map(|h| h[0].abs()).sum();
            let r = r0 * (1.0 + amp) + 2.0 * edge + 1.0;
            [x - r, y - r, x + r, y + r]
        }
    }
}

/// Samples a whole scene. `rng` is the frame's own generator.
pub(super) fn sample_scene(
    rng: &mut SplitMix64,
    variant: Variant,
    width: u32,
    height: u32,
) -> Scene {
    let (w, h) = (width as f32, height as f32);
    let unit = w.min(h) / 256.0;
    let light = sample_light(rng, variant);
    let belt = sample_belt(rng, variant, w, h, unit);
    let band = belt_band(&belt, h);
    let with_defects = rng.chance(0.6);
    let wide_bonus = usize::from(w / h > 1.5 || h / w > 1.5);
    let want = if !with_defects && rng.chance(0.05) {
        0
    } else {
        1 + rng.below(3) as usize + wide_bonus
    };
    let parts = sample_parts(rng, variant, w, h, band, want);
    let mut defects = Vec::new();
    if with_defects && !parts.is_empty() {
        let n = 1 + rng.below(3) as usize;
        let mut tries = 0;
        while defects.len() < n && tries < 20 {
            tries += 1;
            let pi = rng.below(parts.len() as u64) as usize;
            let part = &parts[pi];
            let class = 2 + rng.below(3) as u8;
            let margin = if class == 3 { 6.0 } else { 3.0 };
            let Some(at) = point_on_part(rng, part, margin, w, band) else {
                continue;
            };
            let kind = match class {
                2 => sample_scratch(rng, part, at),
                3 => sample_pit(rng, at, unit),
                _ => sample_stain(rng, part, at),
            };
            let bounds = bounds_of(&kind);
            defects.push(Defect {
                part: pi,
                class_id: class,
                kind,
                bounds,
            });
        }
    }
    Scene {
        width,
        height,
        light,
        belt,
        parts,
        defects,
    }
}
