//! Channel concat and split.
use super::assert_shape_err;
use crate::backend::ops::*;
use crate::backend::{Cpu, Shape};

#[test]
fn concat_interleaves_per_image_and_split_inverts_it() {
    // Batch 2, 1×2 pixels; part a has 1 channel, part b has 2.
    let (sa, sb) = (Shape::new(2, 1, 1, 2), Shape::new(2, 2, 1, 2));
    let a = vec![1.0, 2.0, 3.0, 4.0];
    let b = vec![10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0, 23.0];
    let y = Cpu.concat_channels(&[(&a, sa), (&b, sb)]).unwrap();
    assert_eq!(
        y,
        vec![
            1.0, 2.0, 10.0, 11.0, 12.0, 13.0, 3.0, 4.0, 20.0, 21.0, 22.0, 23.0
        ]
    );
    let parts = Cpu.split_channels(&y, &[sa, sb]).unwrap();
    assert_eq!(parts, vec![a, b]);
}

#[test]
fn mismatched_parts_are_shape_errors() {
    let a = vec![0.0; 4];
    assert_shape_err(
        "h differs",
        Cpu.concat_channels(&[(&a, Shape::new(1, 1, 2, 2)), (&a, Shape::new(1, 1, 4, 1))]),
    );
    assert_shape_err(
        "short part",
        Cpu.concat_channels(&[(&a, Shape::new(1, 2, 2, 2))]),
    );
    assert_shape_err("no parts", Cpu.concat_channels(&[]));
    assert_shape_err(
        "split length",
        Cpu.split_channels(&a, &[Shape::new(1, 1, 1, 2), Shape::new(1, 2, 1, 2)]),
    );
}
