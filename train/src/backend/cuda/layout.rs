//! Channel concatenation and its inverse, one copy kernel per part.
use super::{Cuda, check_len, dim, elems_cfg};
use crate::backend::Shape;
use crate::backend::ops::LayoutOps;
use crate::{Error, Result};
use cudarc::driver::CudaSlice;

type Buf = CudaSlice<f32>;

/// The common `(n, h, w)` of `shapes`, or `Error::Shape` naming the op.
fn common_nhw(what: &str, shapes: impl Iterator<Item = Shape>) -> Result<(usize, usize, usize)> {
    let mut first = None;
    for s in shapes {
        match first {
            None => first = Some((s.n, s.h, s.w)),
            Some(f) if f != (s.n, s.h, s.w) => {
                return Err(Error::Shape(format!(
                    "{what}: part {s} differs in n, h or w from [{}, _, {}, {}]",
                    f.0, f.1, f.2
                )));
            }
            Some(_) => {}
        }
    }
    first.ok_or_else(|| Error::Shape(format!("{what}: no parts")))
}

impl LayoutOps for Cuda {
    fn concat_channels(&self, parts: &[(&Buf, Shape)]) -> Result<Buf> {
        let (n, h, w) = common_nhw("concat_channels", parts.iter().map(|p| p.1))?;
        for (i, (buf, s)) in parts.iter().enumerate() {
            check_len(&format!("concat_channels part {i}"), buf.len(), s.numel())?;
        }
        let ct: usize = parts.iter().map(|p| p.1.c).sum();
        let out_shape = Shape::new(n, ct, h, w);
        let mut out = self.alloc(out_shape.numel())?;
        dim("concat_channels output", out_shape.numel())?;
        let (n_i, ct_i, hw) = (dim("n", n)?, dim("c", ct)?, dim("h·w", h * w)?);
        let mut off = 0usize;
        for (buf, s) in parts {
            let (cp, off_i) = (dim("c", s.c)?, dim("channel offset", off)?);
            if s.numel() > 0 {
                let cfg = elems_cfg(s.numel());
                launch!(self, "concat_part", cfg; *buf, &mut out, &n_i, &cp, &ct_i, &off_i, &hw)?;
            }
            off += s.c;
        }
        Ok(out)
    }

    fn split_channels(&self, dy: &Buf, shapes: &[Shape]) -> Result<Vec<Buf>> {
        let (n, h, w) = common_nhw("split_channels", shapes.iter().copied())?;
        let ct: usize = shapes.iter().map(|s| s.c).sum();
        check_len(
            "split_channels dy",
            dy.len(),
            Shape::new(n, ct, h, w).numel(),
        )?;
        dim("split_channels input", dy.len())?;
        let (n_i, ct_i, hw) = (dim("n", n)?, dim("c", ct)?, dim("h·w", h * w)?);
        let mut off = 0usize;
        let mut out = Vec::with_capacity(shapes.len());
        for s in shapes {
            let mut part = self.alloc(s.numel())?;
            let (cp, off_i) = (dim("c", s.c)?, dim("channel offset", off)?);
            if s.numel() > 0 {
                let cfg = elems_cfg(s.numel());
                launch!(self, "split_part", cfg; dy, &mut part, &n_i, &cp, &ct_i, &off_i, &hw)?;
            }
            off += s.c;
            out.push(part);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_nhw_accepts_equal_and_names_the_odd_part() {
        let a = Shape::new(2, 3, 4, 5);
        assert_eq!(
            common_nhw("t", [a, a.with_c(7)].into_iter()).ok(),
            Some((2, 4, 5))
        );
        let e = common_nhw("t", [a, a.with_hw(4, 6)].into_iter()).err();
        assert!(matches!(e, Some(Error::Shape(m)) if m.contains("[2, 3, 4, 6]")));
        assert!(common_nhw("t", std::iter::empty()).is_err());
    }
}
