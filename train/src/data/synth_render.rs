//! Rasterises a sampled scene into an RGB frame, a class-id mask and a defect-instance map.
//!
//! Order: belt (texture, specks, part shadows) → parts with their defects, composited by
//! anti-aliased coverage → rail → lighting gradient, vignetting → blur → sensor noise.
//! Every label is decided at the pixel centre from the same coverage that blends the colour:
//! a pixel gets a class where that class's coverage is ≥ 0.5. Stains also mark their soft
//! fringe (coverage 0.15..0.5, about one pixel) as ignore (255): it is visibly tinted, yet
//! calling it stain or part would both be wrong half the time.
use super::classes::IGNORE;
use super::classes::{BELT, PART, STAIN};
use super::synth_noise::{value1, value2, white};
use super::synth_scene::{Defect, DefectKind, Finish, Part, Scene};
use contextrast_model::rng::SplitMix64;

/// Coverage below which a stain pixel is unlabelled part, at and above which (up to 0.5) it is
/// ignored.
const STAIN_HALO: f32 = 0.15;

/// Output of [`rasterise`]: RGB bytes (HWC), class ids, and for each pixel 1 + the index of the
/// defect that labelled it (0 = none), from which areas and boxes are counted.
pub(super) struct Raster {
    pub rgb: Vec<u8>,
    pub labels: Vec<u8>,
    pub instances: Vec<u8>,
}

#[inline]
fn clamp01(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

/// Integer pixel range [lo, hi) covering the float interval, clipped to [0, n).
fn span(lo: f32, hi: f32, n: u32) -> (usize, usize) {
    let a = lo.floor().max(0.0) as usize;
    let b = (hi.ceil().max(0.0) as usize).min(n as usize);
    (a.min(b), b)
}

fn belt_pixel(scene: &Scene, x: usize, y: usize) -> [f32; 3] {
    let b = &scene.belt;
    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
    let mottle = 0.65 * value2(px / 48.0, py / 48.0, b.seed)
        + 0.35 * value2(px / 14.0, py / 14.0, b.seed ^ 1);
    let fibre =
        0.5 * white(x as i32, y as i32, b.seed ^ 2) + 0.5 * value2(px / 2.2, py / 1.4, b.seed ^ 3);
    let rib = (py * std::f32::consts::TAU / b.rib_period).sin();
    let mut v = 1.0 + b.mottle * mottle + b.grain * fibre + b.rib_amp * rib;
    for &s in &b.seams {
        let d = (px - s).abs();
        if d < 2.5 {
            v *= 0.7 + 0.12 * d;
        }
    }
    b.color.map(|c| c * v)
}

/// Distance from `p` to segment `a`–`b`.
#[inline]
fn seg_dist(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (abx, aby) = (b[0] - a[0], b[1] - a[1]);
    let (apx, apy) = (p[0] - a[0], p[1] - a[1]);
    let len2 = abx * abx + aby * aby;
    let t = if len2 > 0.0 {
        clamp01((apx * abx + apy * aby) / len2)
    } else {
        0.0
    };
    (apx - t * abx).hypot(apy - t * aby)
}

/// Surface colour of a part at a pixel, before defects and lighting.
fn part_surface(
    part: &Part,
    scene: &Scene,
    x: usize,
    y: usize,
    lx: f32,
    ly: f32,
    d: f32,
) -> [f32; 3] {
    let m = &part.mat;
    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
    let tex = match m.finish {
        Finish::Brushed => {
            0.6 * value2(lx / 40.0, ly * 1.3, part.seed)
                + 0.4 * value2(lx / 9.0, ly * 2.7, part.seed ^ 1)
        }
        Finish::Turned => {
            let r = lx.hypot(ly);
            0.7 * value1(r * 1.1, part.seed) + 0.3 * value1(r * 3.7, part.seed ^ 1)
        }
        Finish::Grainy => {
            0.5 * white(x as i32, y as i32, part.seed)
                + 0.3 * value2(px / 1.8, py / 1.8, part.seed ^ 1)
                + 0.2 * value2(lx / 22.0, ly / 22.0, part.seed ^ 2)
        }
    };
    let dir = scene.light.dir;
    // A gentle tilt across the part gives it volume; a bevel band lights the edge that faces the lamp.
    let (lix, liy) = (
        dir[0] * part.cos + dir[1] * part.sin,
        -dir[0] * part.sin + dir[1] * part.cos,
    );
    let mut v = 1.0 + m.texture * tex + 0.08 * (lx * lix + ly * liy) / part.radius;
    let inside = -d;
    if inside < part.bevel {
        let e = 0.5;
        let gx = part.sdf(px + e, py) - part.sdf(px - e, py);
        let gy = part.sdf(px, py + e) - part.sdf(px, py - e);
        let norm = gx.hypot(gy).max(1e-6);
        let facing = (gx * dir[0] + gy * dir[1]) / norm;
        v += 0.28 * (1.0 - inside / part.bevel) * facing;
    }
    let (hx, hy) = (lx - part.highlight[0], ly - part.highlight[1]);
    let (sx, sy) = (m.spec_size[0] * part.radius, m.spec_size[1] * part.radius);
    let spec = m.spec * (-(hx * hx / (2.0 * sx * sx) + hy * hy / (2.0 * sy * sy))).exp();
    m.albedo.map(|a| a * v + spec)
}

/// Applies one defect to the part colour at pixel centre `p`. Returns the defect's coverage
/// used for labelling (≥ 0.5 = defect) — for stains the raw soft-edge coverage.
fn apply_defect(def: &Defect, scene: &Scene, p: [f32; 2], col: &mut [f32; 3]) -> f32 {
    let dir = scene.light.dir;
    match &def.kind {
        DefectKind::Scratch {
            pts,
            half_width,
            contrast,
        } => {
            let d = pts
                .windows(2)
                .map(|s| seg_dist(p, s[0], s[1]))
                .fold(f32::MAX, f32::min);
            let cov = clamp01(half_width + 0.5 - d);
            if cov > 0.0 {
                for c in col.iter_mut() {
                    *c += cov * contrast;
                }
            }
            cov
        }
        DefectKind::Pit {
            x,
            y,
            a,
            b,
            cos,
            sin,
            rim,
            depth,
            rim_gain,
        } => {
            let (dx, dy) = (p[0] - x, p[1] - y);
            let (qx, qy) = (dx * cos + dy * sin, -dx * sin + dy * cos);
            let rho = (qx / a).hypot(qy / b);
            let core = clamp01(0.5 - (rho - 1.0) * b);
            let (ao, bo) = (a + rim, b + rim);
            let outer = clamp01(0.5 - ((qx / ao).hypot(qy / bo) - 1.0) * bo);
            let r = dx.hypot(dy).max(1e-6);
            let facing = (dx * dir[0] + dy * dir[1]) / r;
            // Inside a dent the wall nearer the lamp is in shadow, the far wall catches light.
            let shade = 1.0
                - depth * core * (0.75 + 0.25 * clamp01(1.0 - rho * rho))
                - 0.12 * core * facing;
            let lift = rim_gain * (outer - core) * (0.6 + 0.4 * facing);
            for c in col.iter_mut() {
                *c = *c * shade + lift;
            }
            outer
        }
        DefectKind::Stain {
            x,
            y,
            r0,
            harmonics,
            edge,
            opacity,
            color,
            seed,
        } => {
            let (dx, dy) = (p[0] - x, p[1] - y);
            let r = dx.hypot(dy);
            let theta = dy.atan2(dx);
            let mut k = 1.0;
            for (i, h) in harmonics.iter().enumerate() {
                k += h[0] * ((i as f32 + 2.0) * theta + h[1]).cos();
            }
            let cov = clamp01(0.5 - (r - r0 * k) / edge);
            if cov > 0.0 {
                let mottle = 0.75 + 0.25 * value2(dx / 4.0, dy / 4.0, *seed);
                let alpha = opacity * cov * mottle;
                for (c, s) in col.iter_mut().zip(color) {
                    *c += (s - *c) * alpha;
                }
            }
            cov
        }
    }
}

fn draw_belt(scene: &Scene, img: &mut [[f32; 3]]) {
    let w = scene.width as usize;
    for (i, px) in img.iter_mut().enumerate() {
        *px = belt_pixel(scene, i % w, i / w);
    }
    for s in &scene.belt.specks {
        let (x0, x1) = span(s.x - s.r - 1.0, s.x + s.r + 1.0, scene.width);
        let (y0, y1) = span(s.y - s.r - 1.0, s.y + s.r + 1.0, scene.height);
        for y in y0..y1 {
            for x in x0..x1 {
                let d = (x as f32 + 0.5 - s.x).hypot(y as f32 + 0.5 - s.y) - s.r;
                let cov = clamp01(0.5 - d);
                for c in img[y * w + x].iter_mut() {
                    *c += cov * s.delta;
                }
            }
        }
    }
    for part in &scene.parts {
        let off = [
            -scene.light.dir[0] * part.height,
            -scene.light.dir[1] * part.height,
        ];
        let soft = 1.0 + 0.6 * part.height;
        let reach = part.radius + soft + 1.0;
        let (x0, x1) = span(
            part.cx + off[0] - reach,
            part.cx + off[0] + reach,
            scene.width,
        );
        let (y0, y1) = span(
            part.cy + off[1] - reach,
            part.cy + off[1] + reach,
            scene.height,
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let d = part.sdf(x as f32 + 0.5 - off[0], y as f32 + 0.5 - off[1]);
                let s = 0.45 * clamp01(0.5 - d / (2.0 * soft));
                for c in img[y * w + x].iter_mut() {
                    *c *= 1.0 - s;
                }
            }
        }
    }
}

fn draw_parts(scene: &Scene, img: &mut [[f32; 3]], labels: &mut [u8], inst: &mut [u8]) {
    let w = scene.width as usize;
    for (pi, part) in scene.parts.iter().enumerate() {
        let defects: Vec<(usize, &Defect)> = scene
            .defects
            .iter()
            .enumerate()
            .filter(|(_, d)| d.part == pi)
            .collect();
        let (x0, x1) = span(
            part.cx - part.radius - 1.0,
            part.cx + part.radius + 1.0,
            scene.width,
        );
        let (y0, y1) = span(
            part.cy - part.radius - 1.0,
            part.cy + part.radius + 1.0,
            scene.height,
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let p = [x as f32 + 0.5, y as f32 + 0.5];
                let (lx, ly) = part.local(p[0], p[1]);
                let d = part.sdf_local(lx, ly);
                let cov = clamp01(0.5 - d);
                if cov <= 0.0 {
                    continue;
                }
                let i = y * w + x;
                let mut col = part_surface(part, scene, x, y, lx, ly, d);
                let on_part = d <= 0.0;
                let mut label = PART;
                let mut instance = 0u8;
                for &(di, def) in &defects {
                    let b = def.bounds;
                    if p[0] < b[0] || p[0] > b[2] || p[1] < b[1] || p[1] > b[3] {
                        continue;
                    }
                    let dc = apply_defect(def, scene, p, &mut col);
                    if dc >= 0.5 {
                        label = def.class_id;
                        instance = di as u8 + 1;
                    } else if def.class_id == STAIN && dc >= STAIN_HALO && label == PART {
                        label = IGNORE;
                    }
                }
                for (o, c) in img[i].iter_mut().zip(col) {
                    *o += (c - *o) * cov;
                }
                if on_part {
                    labels[i] = label;
                    inst[i] = instance;
                }
            }
        }
    }
}

fn draw_rail(scene: &Scene, img: &mut [[f32; 3]], labels: &mut [u8], inst: &mut [u8]) {
    let Some(rail) = &scene.belt.rail else { return };
    let (w, h) = (scene.width as usize, scene.height as f32);
    let seed = scene.belt.seed ^ 0xA11;
    for (i, px) in img.iter_mut().enumerate() {
        let (x, y) = (i % w, i / w);
        let py = y as f32 + 0.5;
        // Distance into the rail from its inner edge.
        let depth = if rail.top {
            rail.height - py
        } else {
            py - (h - rail.height)
        };
        if depth < -3.0 {
            continue;
        }
        if depth < 0.0 {
            // Contact shadow on the belt right next to the rail.
            let s = 0.35 * (1.0 + depth / 3.0);
            for c in px.iter_mut() {
                *c *= 1.0 - s;
            }
            continue;
        }
        let cov = clamp01(depth + 0.5);
        let brushed = 1.0
            + 0.08 * value2(x as f32 / 30.0, py * 1.5, seed)
            + 0.03 * white(x as i32, y as i32, seed);
        let edge = if depth < 2.0 { 1.25 } else { 1.0 };
        for (c, r) in px.iter_mut().zip(rail.color) {
            *c += (r * brushed * edge - *c) * cov;
        }
        if cov >= 0.5 {
            labels[i] = BELT;
            inst[i] = 0;
        }
    }
}

fn light_and_blur(scene: &Scene, img: &mut [[f32; 3]]) {
    let (w, h) = (scene.width as usize, scene.height as usize);
    let l = &scene.light;
    let (hx, hy) = (0.5 * w as f32, 0.5 * h as f32);
    let diag2 = hx * hx + hy * hy;
    for (i, px) in img.iter_mut().enumerate() {
        let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
        let (ux, uy) = ((x - hx) / hx, (y - hy) / hy);
        let g = (1.0 + l.grad[0] * ux + l.grad[1] * uy).max(0.2);
        let r2 = ((x - hx) * (x - hx) + (y - hy) * (y - hy)) / diag2;
        let k = g * (1.0 - l.vignette * r2);
        for (c, gain) in px.iter_mut().zip(l.gain) {
            *c *= gain * k;
        }
    }
    // Separable [1 2 1]/4 blur, edges clamped: the optics' slight softness.
    let mut tmp = vec![[0.0f32; 3]; img.len()];
    for y in 0..h {
        let row = &img[y * w..(y + 1) * w];
        for x in 0..w {
            let (a, b, c) = (row[x.saturating_sub(1)], row[x], row[(x + 1).min(w - 1)]);
            tmp[y * w + x] = [0, 1, 2].map(|k| 0.25 * a[k] + 0.5 * b[k] + 0.25 * c[k]);
        }
    }
    for y in 0..h {
        let (up, down) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            let (a, b, c) = (tmp[up * w + x], tmp[y * w + x], tmp[down * w + x]);
            img[y * w + x] = [0, 1, 2].map(|k| 0.25 * a[k] + 0.5 * b[k] + 0.25 * c[k]);
        }
    }
}

fn quantise_with_noise(scene: &Scene, img: &[[f32; 3]], noise_seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(noise_seed);
    let l = &scene.light;
    let read2 = l.read_noise * l.read_noise;
    let mut out = Vec::with_capacity(img.len() * 3);
    for px in img {
        for &c in px {
            let sigma = (read2 + l.shot_noise * l.shot_noise * c.max(0.0)).sqrt();
            let v = clamp01(c + sigma * rng.normal());
            out.push((v * 255.0 + 0.5) as u8);
        }
    }
    out
}

/// Renders `scene`; `noise_seed` drives only the sensor noise.
pub(super) fn rasterise(scene: &Scene, noise_seed: u64) -> Raster {
    let n = scene.width as usize * scene.height as usize;
    let mut img = vec![[0.0f32; 3]; n];
    let mut labels = vec![BELT; n];
    let mut instances = vec![0u8; n];
    draw_belt(scene, &mut img);
    draw_parts(scene, &mut img, &mut labels, &mut instances);
    draw_rail(scene, &mut img, &mut labels, &mut instances);
    light_and_blur(scene, &mut img);
    let rgb = quantise_with_noise(scene, &img, noise_seed);
    Raster {
        rgb,
        labels,
        instances,
    }
}
