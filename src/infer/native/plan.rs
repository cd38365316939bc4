//! A [`Net`] planned for one input size: every value's shape, one arena holding all of them
//! (values whose lifetimes do not overlap share memory; the inputs of a channel concat are
//! written straight into its output, so the concat costs nothing), per-thread scratch, and
//! the work split of every step. Built once per frame size; running it allocates nothing.
use super::gemm::{PAD_SLACK, Packed, PadLayout};
use super::graph::{INPUT, Layer, Net};
use crate::infer::upsample::{Axis, Tap, taps};
use contextrast_model::im2col::Geom;
use std::sync::Arc;

/// Values start at multiples of this many floats (64 bytes: one cache line, one AVX-512 load).
const ALIGN: usize = 16;
/// Bytes of one convolution tile's column matrix plus its output: about half an L2.
const TILE_BYTES: usize = 256 * 1024;
/// Narrowest convolution tile: narrower ones waste the GEMM microkernel.
const MIN_TILE: usize = 64;
/// Output rows per resize work unit.
pub(super) const RESIZE_BAND: usize = 32;

/// The work split of a convolution: `tiles` column ranges of `tile` output pixels.
#[derive(Clone, Debug)]
pub(super) struct ConvWork {
    pub geom: Geom,
    /// A 3×3, pad-1 convolution of stride 1 or 2 read straight from its padded input (no
    /// im2col), in tiles of whole output rows.
    pub direct: bool,
    /// The weights packed for this CPU's kernel.
    pub packed: Packed,
    pub tile: usize,
    pub tiles: usize,
}

/// What a step needs at run time besides the layer.
#[derive(Clone, Debug)]
pub(super) enum Work {
    Conv(ConvWork),
    Resize {
        rows: Vec<Tap>,
        cols: Axis,
    },
    /// Element-wise steps and concat copies run in one piece.
    Whole,
}

/// The planned network for one `h`×`w` input.
#[derive(Debug)]
pub struct Plan {
    pub(super) net: Arc<Net>,
    pub(super) h: usize,
    pub(super) w: usize,
    /// `[c, h, w]` of every value.
    pub(super) shapes: Vec<[usize; 3]>,
    /// Arena offset of every value.
    pub(super) offsets: Vec<usize>,
    /// Values written in place into a concat's output (nothing to copy at that step).
    pub(super) in_place: Vec<bool>,
    pub(super) work: Vec<Work>,
    pub(super) arena: Vec<f32>,
    /// The zero-bordered input of the current direct 3×3 convolution (largest one's size).
    /// Floats of scratch one thread needs.
    pub(super) scratch_len: usize,
}

impl Plan {
    /// Plans `net` for an `h`×`w` input run on `threads` threads; the error names the step
    /// whose shape does not work.
    pub fn new(net: Arc<Net>, h: usize, w: usize, threads: usize) -> Result<Plan, String> {
        let shapes = shapes(&net, h, w)?;
        let numel = |v: usize| shapes[v].iter().product::<usize>();
        let n = net.steps.len();
        // Lifetimes in step numbers: the input is written at 0, step i runs at i + 1, and the
        // output stays live after the last step.
        let mut def = vec![0usize; net.values];
        let mut last = vec![0usize; net.values];
        for (i, s) in net.steps.iter().enumerate() {
            def[s.output] = i + 1;
            for &v in &s.inputs {
                last[v] = last[v].max(i + 1);
            }
        }
        last[net.output] = n + 1;

        // Concat inputs written in place: produced by a step, read only by this concat, once.
        let readers = net.readers();
        let mut parent: Vec<Option<(usize, usize)>> = vec![None; net.values];
        for s in &net.steps {
            if s.layer != Layer::Concat {
                continue;
            }
            let mut off = 0;
            for &v in &s.inputs {
                let once = s.inputs.iter().filter(|&&u| u == v).count() == 1;
                if v != INPUT && readers[v] == 1 && once {
                    parent[v] = Some((s.output, off));
                }
                off += numel(v);
            }
        }
        // A concat output that is itself in place in another concat: resolve to the root.
        let root = |mut v: usize| {
            let mut off = 0;
            while let Some((p, o)) = parent[v] {
                off += o;
                v = p;
            }
            (v, off)
        };
        let mut span: Vec<(usize, usize)> = (0..net.values).map(|v| (def[v], last[v])).collect();
        for v in 0..net.values {
            if parent[v].is_some() {
                let (r, _) = root(v);
                span[r].0 = span[r].0.min(def[v]);
                span[r].1 = span[r].1.max(last[v]);
            }
        }
        let produced: Vec<bool> = (0..net.values)
            .map(|v| v == INPUT || net.steps.iter().any(|s| s.output == v))
            .collect();
        let mut blocks: Vec<usize> = (0..net.values)
            .filter(|&v| parent[v].is_none() && produced[v])
            .collect();
        blocks.sort_by_key(|&v| (std::cmp::Reverse(numel(v)), v));
        let mut placed: Vec<(usize, usize, usize)> = Vec::new(); // (value, offset, len)
        let mut offsets = vec![0usize; net.values];
        for &v in &blocks {
            let len = numel(v).next_multiple_of(ALIGN);
            let overlaps_life = |u: usize| span[u].0 <= span[v].1 && span[v].0 <= span[u].1;
            let mut cands: Vec<usize> = vec![0];
            cands.extend(
                placed
                    .iter()
                    .filter(|p| overlaps_life(p.0))
                    .map(|p| p.1 + p.2),
            );
            cands.sort_unstable();
            let off = cands
                .into_iter()
                .find(|&o| {
                    placed
                        .iter()
                        .filter(|p| overlaps_life(p.0))
                        .all(|p| o + len <= p.1 || p.1 + p.2 <= o)
                })
                .unwrap_or(0);
            offsets[v] = off;
            placed.push((v, off, len));
        }
        for v in 0..net.values {
            if parent[v].is_some() {
                let (r, off) = root(v);
                offsets[v] = offsets[r] + off;
            }
        }
        let arena_len = placed.iter().map(|p| p.1 + p.2).max().unwrap_or(0);
        let in_place: Vec<bool> = parent.iter().map(Option::is_some).collect();

        let mut work = Vec::with_capacity(n);
        let mut scratch_len = 0;
        for s in &net.steps {
            let [_, ih, iw] = shapes[s.inputs[0]];
            let [oc, oh, ow] = shapes[s.output];
            work.push(match &s.layer {
                Layer::Conv(c) => {
                    let geom = Geom::new(&c.spec, ih, iw);
                    let (p, k) = (geom.p(), geom.rows());
                    let direct = c.spec.k == 3 && c.spec.pad == 1 && matches!(c.spec.stride, 1 | 2);
                    let im2col = !geom.is_pointwise() && !direct;
                    let per_col = 4 * (oc + if im2col { k } else { 0 });
                    let mut tile = (TILE_BYTES / per_col).max(MIN_TILE);
                    if threads > 1 {
                        tile = tile.min(p.div_ceil(4 * threads)).max(MIN_TILE);
                    }
                    let tile = if direct {
                        // Whole rows: the output tile stays in cache for the epilogue.
                        let mut rows = (TILE_BYTES / (4 * oc * ow)).max(1);
                        if threads > 1 {
                            rows = rows.min(oh.div_ceil(4 * threads));
                        }
                        rows.min(oh) * ow
                    } else {
                        tile.next_multiple_of(16).min(p)
                    };
                    if im2col {
                        scratch_len = scratch_len.max(k * tile);
                    }
                    if direct {
                        // Each tile pads the band of input rows it reads in its scratch.
                        let l = PadLayout::new(ih, iw, c.spec.stride);
                        let rows = l.rows_for(tile / ow);
                        scratch_len = scratch_len.max(c.spec.c_in * l.band(rows) + PAD_SLACK);
                    }
                    Work::Conv(ConvWork {
                        geom,
                        direct,
                        packed: Packed::new(&c.weight, c.spec.c_out, k),
                        tile,
                        tiles: p.div_ceil(tile),
                    })
                }
                Layer::Resize { .. } => {
                    scratch_len = scratch_len.max(2 * ow);
                    Work::Resize {
                        rows: taps(ih, oh),
                        cols: Axis::new(iw, ow),
                    }
                }
                _ => Work::Whole,
            });
        }
        let plan = Plan {
            net,
            h,
            w,
            shapes,
            offsets,
            in_place,
            work,
            arena: vec![0.0; arena_len],
            scratch_len,
        };
        plan.check_disjoint()?;
        Ok(plan)
    }

    /// Arena range of value `v`.
    pub(super) fn range(&self, v: usize) -> std::ops::Range<usize> {
        let n: usize = self.shapes[v].iter().product();
        self.offsets[v]..self.offsets[v] + n
    }

    /// Every step's output shares no memory with its inputs (those written in place into it
    /// aside): the execution's raw views rely on this, so it is checked, not assumed.
    fn check_disjoint(&self) -> Result<(), String> {
        for s in &self.net.steps {
            let o = self.range(s.output);
            for &v in &s.inputs {
                let i = self.range(v);
                let inside = self.in_place[v] && o.start <= i.start && i.end <= o.end;
                let apart = i.end <= o.start || o.end <= i.start;
                if !(apart || (s.layer == Layer::Concat && inside)) {
                    return Err(format!("planner error: `{}` overlaps its input", s.name));
                }
            }
        }
        if self.arena.len()
            < self
                .offsets
                .iter()
                .zip(&self.shapes)
                .map(|(o, s)| o + s.iter().product::<usize>())
                .max()
                .unwrap_or(0)
        {
            return Err("planner error: the arena is too small".into());
        }
        Ok(())
    }

    /// Floats of scratch each worker needs ([`Workers::reserve`](super::Workers::reserve)).
    pub fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// Floats the arena holds (for memory reports).
    pub fn arena_len(&self) -> usize {
        self.arena.len()
    }

    /// Floats of activation memory in all: the arena (padded convolution inputs live in the
    /// workers' scratch, one tile's band each).
    pub fn activation_len(&self) -> usize {
        self.arena.len()
    }

    /// The input tensor `[3, h, w]`, to be filled before [`Plan::run`](super::exec).
    pub fn input_mut(&mut self) -> &mut [f32] {
        let r = self.range(INPUT);
        &mut self.arena[r]
    }

    /// The output `[C, h, w]` of the last run.
    pub fn output(&self) -> &[f32] {
        &self.arena[self.range(self.net.output)]
    }

    /// `[c, h, w]` of the output.
    pub fn output_shape(&self) -> [usize; 3] {
        self.shapes[self.net.output]
    }

    /// `(h, w)` of the input this plan was made for.
    pub fn size(&self) -> (usize, usize) {
        (self.h, self.w)
    }
}

/// Shapes of every value for an `h`×`w` input.
fn shapes(net: &Net, h: usize, w: usize) -> Result<Vec<[usize; 3]>, String> {
    let channels = net.channels()?;
    let mut s = vec![[0usize; 3]; net.values];
    s[INPUT] = [3, h, w];
    for st in &net.steps {
        let x = s[st.inputs[0]];
        let out = match &st.layer {
            Layer::Conv(c) => {
                let (k, p) = (c.spec.k, c.spec.pad);
                if x[1] + 2 * p < k || x[2] + 2 * p < k {
                    return Err(format!(
                        "`{}`: input {}x{} is smaller than its {k}x{k} kernel",
                        st.name, x[2], x[1]
                    ));
                }
                let (oh, ow) = c.spec.out_hw(x[1], x[2]);
                if let Some(a) = c.epi.add
                    && s[a][1..] != [oh, ow]
                {
                    return Err(format!("`{}` adds tensors of different sizes", st.name));
                }
                [c.spec.c_out, oh, ow]
            }
            Layer::Relu => x,
            Layer::Add => {
                if s[st.inputs[1]] != x {
                    return Err(format!("`{}` adds tensors of different shapes", st.name));
                }
                x
            }
            Layer::Concat => {
                if st.inputs.iter().any(|&v| s[v][1..] != x[1..]) {
                    return Err(format!(
                        "`{}` concatenates tensors of different sizes",
                        st.name
                    ));
                }
                [channels[st.output], x[1], x[2]]
            }
            Layer::Resize { factor, epi } => {
                let out = [x[0], x[1] * factor, x[2] * factor];
                if let Some(a) = epi.add
                    && s[a] != out
                {
                    return Err(format!("`{}` adds tensors of different sizes", st.name));
                }
                out
            }
        };
        if out.contains(&0) {
            return Err(format!("`{}` produces an empty tensor", st.name));
        }
        s[st.output] = out;
    }
    Ok(s)
}
